"""Tiny random backbones built from configs (never downloaded) and a minimal tokenizer for them."""

from __future__ import annotations

import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    Qwen2Config,
)

from svgt.backbone import Backbone, wrap_backbone

VOCAB = 97
FAMILIES = ["gpt2", "llama", "qwen2", "mistral", "gemma3"]


def tiny_config(family: str, attn: str = "sdpa"):
    common = dict(vocab_size=VOCAB, pad_token_id=0, eos_token_id=1, bos_token_id=2)
    if family == "gpt2":
        cfg = GPT2Config(n_embd=32, n_layer=4, n_head=4, n_positions=256, **common)
    elif family == "llama":
        cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                          num_key_value_heads=2, max_position_embeddings=256, **common)
    elif family == "qwen2":
        cfg = Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                          num_key_value_heads=2, max_position_embeddings=256, **common)
    elif family == "mistral":
        cfg = MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                            num_key_value_heads=2, max_position_embeddings=256, sliding_window=None, **common)
    elif family == "gemma3":
        cfg = Gemma3TextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                               num_key_value_heads=2, head_dim=8, max_position_embeddings=256, sliding_window=16,
                               **common)
    else:
        raise ValueError(family)
    cfg._attn_implementation = attn
    return cfg


class TinyTokenizer:
    """Enough of a tokenizer for svgt: ids are bytes mod the vocabulary, no chat template."""

    chat_template = None

    def __init__(self) -> None:
        self.pad_token_id, self.eos_token_id, self.bos_token_id = 0, 1, 2
        self.pad_token = self.eos_token = None

    def __call__(self, text: str, add_special_tokens: bool = True):
        ids = [3 + (b % (VOCAB - 3)) for b in text.encode()]
        return {"input_ids": ([self.bos_token_id] if add_special_tokens else []) + ids}

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return " ".join(str(i) for i in ids if not (skip_special_tokens and i < 3))


def tiny_backbone(family: str = "llama", attn: str = "sdpa", seed: int = 0) -> Backbone:
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family, attn))
    model.generation_config.eos_token_id = 1
    model.generation_config.pad_token_id = 0
    return wrap_backbone(model, TinyTokenizer(), name=f"tiny-{family}")


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def save_tiny_hf_backbone(path, family: str = "llama", chat_template: bool = True) -> str:
    """Write a tiny random model plus a real (byte-level BPE) fast tokenizer to `path`, loadable by path."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "</s>", "<s>", "<|user|>", "<|assistant|>", "<|system|>"]
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["hello world how are you", "tell me a story about a cat"] * 10, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", bos_token="<s>")
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)
    cfg = tiny_config(family)
    cfg.vocab_size = len(fast)
    cfg.pad_token_id, cfg.eos_token_id, cfg.bos_token_id = 0, 1, 2
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    model.generation_config.eos_token_id = 1
    model.generation_config.pad_token_id = 0
    model.save_pretrained(path)
    return str(path)
