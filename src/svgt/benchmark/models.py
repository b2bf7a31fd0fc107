"""What the benchmark runs on: a backbone (a real one by name, or random weights in a real model's shape), the
value module that guides it, and prompts of an exact token length."""

from __future__ import annotations

from pathlib import Path

import torch

from ..backbone import Backbone, load_backbone, resolve_dtype, wrap_backbone
from ..module import ValueModule

RANDOM_PREFIX = "random:"

# Shapes of real models (from their published config.json files), so that speed can be measured on a machine the
# real weights cannot reach. Weights are random: text quality is irrelevant to speed.
RANDOM_CONFIGS: dict[str, dict] = {
    "llama-3.2-1b": dict(  # scripts/gpu_check.sh trains a few steps of each stage on it
        family="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, head_dim=64, vocab_size=128256, max_position_embeddings=131072, rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    ),
    "llama-3.2-3b": dict(
        family="llama", hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
        num_key_value_heads=8, head_dim=128, vocab_size=128256, max_position_embeddings=131072, rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    ),
    "mistral-7b": dict(  # Mistral-7B v0.3: full attention (no sliding window), 32768-token vocabulary
        family="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, head_dim=128, vocab_size=32768, max_position_embeddings=32768, rms_norm_eps=1e-5,
        tie_word_embeddings=False, sliding_window=None,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    ),
    "smollm2-135m": dict(
        family="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, head_dim=64, vocab_size=49152, max_position_embeddings=8192, rms_norm_eps=1e-5,
        tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
    ),
    # Not a real model: a seconds-fast stand-in for tests and smoke runs.
    "tiny-llama": dict(
        family="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, vocab_size=300, max_position_embeddings=4096, rms_norm_eps=1e-5,
        tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    ),
}

PAD_ID, EOS_ID, BOS_ID, BYTE_OFFSET = 0, 1, 2, 3

# Public-domain prose (Jane Austen, Pride and Prejudice, 1813, chapter 1); repeated to any prompt length.
REAL_TEXT = (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want "
    "of a wife. However little known the feelings or views of such a man may be on his first entering a "
    "neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he is considered "
    "the rightful property of some one or other of their daughters. \"My dear Mr. Bennet,\" said his lady to him "
    "one day, \"have you heard that Netherfield Park is let at last?\" Mr. Bennet replied that he had not. \"But "
    "it is,\" returned she; \"for Mrs. Long has just been here, and she told me all about it.\" Mr. Bennet made "
    "no answer. \"Do you not want to know who has taken it?\" cried his wife impatiently. \"You want to tell me, "
    "and I have no objection to hearing it.\" This was invitation enough. "
)


class ByteTokenizer:
    """Byte-level stand-in tokenizer for random backbones: id = 3 + byte; 0 pad, 1 eos, 2 bos; no chat template."""

    chat_template = None
    pad_token_id, eos_token_id, bos_token_id = PAD_ID, EOS_ID, BOS_ID
    pad_token, eos_token, bos_token = "<pad>", "</s>", "<s>"

    def __init__(self, vocab_size: int) -> None:
        if vocab_size < BYTE_OFFSET + 256:
            # Tiny vocabularies fold the bytes; fine for speed, where the text is never read.
            self.modulo = vocab_size - BYTE_OFFSET
        else:
            self.modulo = 256
        self.vocab_size = vocab_size

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        ids = [BYTE_OFFSET + (b % self.modulo) for b in text.encode("utf-8")]
        return {"input_ids": ([BOS_ID] if add_special_tokens else []) + ids}

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        data = bytes((int(i) - BYTE_OFFSET) % 256 for i in ids if int(i) >= BYTE_OFFSET)
        return data.decode("utf-8", errors="replace")

    def __len__(self) -> int:
        return self.vocab_size


def random_backbone(name: str, device: str = "cpu", dtype: torch.dtype | None = None, seed: int = 0) -> Backbone:
    """A randomly initialised model with the shape of `name` (see RANDOM_CONFIGS), built directly on `device`."""
    from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig

    if name not in RANDOM_CONFIGS:
        raise ValueError(f"unknown random config {name!r}; choose one of {', '.join(RANDOM_CONFIGS)}")
    spec = dict(RANDOM_CONFIGS[name])
    family = spec.pop("family")
    config_cls = {"llama": LlamaConfig, "mistral": MistralConfig}[family]
    config = config_cls(pad_token_id=PAD_ID, eos_token_id=EOS_ID, bos_token_id=BOS_ID, **spec)
    config._attn_implementation = "sdpa"
    dtype = resolve_dtype(dtype, device)  # None: the device's default
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.generation_config.eos_token_id = EOS_ID
    model.generation_config.pad_token_id = PAD_ID
    model.generation_config.bos_token_id = BOS_ID
    return wrap_backbone(model, ByteTokenizer(config.vocab_size), name=f"{RANDOM_PREFIX}{name}")


def bench_backbone(spec: str | Backbone, device: str = "cpu", dtype: torch.dtype | None = None) -> Backbone:
    """`random:<config>` builds random weights in a named shape; anything else is loaded by `load_backbone`
    (a built-in name, hub id or path); a Backbone is used as it is."""
    if isinstance(spec, Backbone):
        return spec
    if spec.startswith(RANDOM_PREFIX):
        return random_backbone(spec[len(RANDOM_PREFIX):], device, dtype)
    return load_backbone(spec, device=device, dtype=resolve_dtype(dtype, device))


def bench_module(backbone: Backbone, seed: int = 0, artifact: str | Path | None = None) -> tuple[ValueModule, str]:
    """`artifact` (a trained module's folder) if given, else the value module shipped for this backbone if there is
    one, else an untrained one of the default shape. Speed does not depend on the weights, except through gating
    (which reads the discriminator's score) and the layers (a lower insert layer puts the bridge rows through more
    layers)."""
    from ..artifact import load_pretrained
    from ..pipeline import artifact_source, untrained_module

    source = artifact_source(backbone.name, artifact)
    if source is not None:
        return load_pretrained(source, backbone).to(backbone.device).eval(), str(source)
    return untrained_module(backbone, seed), "untrained"


def prompt_batch(backbone: Backbone, batch: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(batch, length)` ids cut from real text repeated (no chat template, no special tokens), each row starting
    at a different place so rows differ; every row is exactly `length` tokens, so no padding is involved."""
    tokenizer = backbone.tokenizer
    unit = list(tokenizer(REAL_TEXT, add_special_tokens=False)["input_ids"])
    stride = 37
    need = length + stride * batch
    ids = (unit * (need // len(unit) + 1))[:need]
    rows = [ids[r * stride : r * stride + length] for r in range(batch)]
    input_ids = torch.tensor(rows, dtype=torch.long, device=backbone.device)
    return input_ids, torch.ones_like(input_ids)


def parameter_count(backbone: Backbone) -> int:
    return sum(p.numel() for p in backbone.model.parameters())
