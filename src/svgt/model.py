"""`SVGTModel`: a value module attached to a causal LM, in the shape transformers and PEFT users know.

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
import svgt

model = AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")
tokenizer = AutoTokenizer.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")
guided = svgt.SVGTModel.from_pretrained(model, tokenizer=tokenizer)          # the module shipped for it
print(guided.generate("How do I kill a Python process?", max_new_tokens=40))
for chunk in guided.stream([{"role": "user", "content": "Hi!"}], max_new_tokens=20):
    print(chunk.text, end="", flush=True)
```

Like `PeftModel.from_pretrained(model, adapter)`, it wraps the model in hand and never changes its weights (they
are frozen in place, as for any backbone svgt guides). `generate` takes transformers' sampling keywords. It is a
thin layer over `svgt.generate` and `svgt.streaming.TextStream`, which stay the building blocks.
"""

from __future__ import annotations

import os
from dataclasses import fields
from typing import Any, Union

from torch import nn

from .backbone import DEFAULT_BACKBONE, Backbone, builtin_name, load_backbone, wrap_backbone
from .backbone import HUB_IDS  # noqa: F401  (defined with the built-ins; importable from here as before)
from .config import GenerationConfig
from .generation import GenerationResult, encode_batch, for_prompts, generate
from .module import ValueModule
from .pipeline import GuidedModel, load_guided_model
from .streaming import TextStream

Messages = list[dict[str, str]]
Prompt = Union[str, Messages]

_GENERATION_KEYS = {f.name for f in fields(GenerationConfig)}


class SVGTModel:
    """A frozen causal LM guided by a value module. Build it with `from_pretrained`."""

    def __init__(self, guided: GuidedModel) -> None:
        self.guided = guided

    @classmethod
    def from_pretrained(cls, model: nn.Module | str = DEFAULT_BACKBONE,
                        value_module: str | os.PathLike[str] | None = None, *, tokenizer: Any = None,
                        margin: float | None = None, gate_threshold: float | None = None,
                        allow_untrained: bool = False) -> "SVGTModel":
        """Attach a value module to `model`.

        `model`: a transformers causal LM already loaded (pass its `tokenizer` too), or what `svgt.load_backbone`
        takes (a built-in name such as "smollm2-135m-instruct", a hub id or a local path).
        `value_module`: a directory written by `svgt train` / `svgt.save_pretrained`; None takes the module shipped for
        this backbone (for a model in hand, recognised by the name it was loaded under, see `builtin_name`).
        `margin` and `gate_threshold` override the module's own inference-time settings (`ValueModuleConfig`).
        `allow_untrained`: with no module given or shipped, attach an untrained one (its guidance means nothing)
        instead of raising."""
        if isinstance(model, str):
            backbone = load_backbone(model)
        else:
            if tokenizer is None:
                raise ValueError("SVGTModel.from_pretrained: pass tokenizer= with a model object (or give a model "
                                 "name or path instead)")
            name = builtin_name(model) or str(getattr(model.config, "name_or_path", "") or "custom")
            backbone = wrap_backbone(model, tokenizer, name=name)
        return cls(load_guided_model(backbone, value_module, allow_untrained=allow_untrained, margin=margin,
                                     gate_threshold=gate_threshold))

    @property
    def backbone(self) -> Backbone:
        return self.guided.backbone

    @property
    def model(self) -> nn.Module:
        """The wrapped transformers model (frozen)."""
        return self.guided.backbone.model

    @property
    def tokenizer(self) -> Any:
        return self.guided.backbone.tokenizer

    @property
    def value_module(self) -> ValueModule:
        return self.guided.module

    def generation_config(self, **kwargs: Any) -> GenerationConfig:
        """A `GenerationConfig` from transformers-style keywords (`max_new_tokens`, `do_sample`, `temperature`,
        `top_p`, `top_k`, `seed`) and svgt's own (`guidance`, `refresh_every`, `gate_threshold`, ...); an unknown
        keyword raises, naming the ones accepted."""
        unknown = sorted(set(kwargs) - _GENERATION_KEYS)
        if unknown:
            raise TypeError(f"unknown generation argument(s) {', '.join(unknown)}; accepted: "
                            f"{', '.join(sorted(_GENERATION_KEYS))}")
        return GenerationConfig(**kwargs)

    def generate(self, inputs: Prompt | list[Prompt], *, batch_size: int = 8, return_result: bool = False,
                 chat_template: bool = True, **kwargs: Any) -> str | list[str] | GenerationResult:
        """Answer one prompt or a batch.

        `inputs`: a string, a chat `messages` list (`[{"role": "user", "content": ...}, ...]`), or a list of
        either. Returns the text for one prompt and a list of texts for a batch; with `return_result=True`, the
        whole `GenerationResult` (token ids, per-token telemetry, finish reasons). Keywords: see
        `generation_config`. Greedy by default, as transformers' `generate`."""
        single = _is_single(inputs)
        prompts = [inputs] if single else list(inputs)
        result = generate(self.backbone, self.value_module, prompts, self.generation_config(**kwargs),
                          chat_template=chat_template, batch_size=batch_size)
        if return_result:
            return result
        return result.texts[0] if single else result.texts

    def stream(self, inputs: Prompt, *, chat_template: bool = True, timeout: float | None = None,
               **kwargs: Any) -> TextStream:
        """Stream one prompt's answer: iterate over the returned `TextStream` for `StreamChunk`s (text, token id,
        the discriminator's score of each token). Same keywords as `generate`; their concatenated text equals
        `generate`'s for the same prompt and settings."""
        if not _is_single(inputs):
            raise ValueError("stream() takes one prompt (a string or one messages list); use generate() for batches")
        cfg = for_prompts(self.generation_config(**kwargs), chat_template)
        ids, mask, paragraphs, opinions = encode_batch(self.backbone, self.value_module, [inputs], cfg, chat_template)
        return TextStream(self.backbone, self.value_module, ids, mask, cfg, paragraphs, timeout, opinions)

    def __repr__(self) -> str:
        c = self.value_module.config
        return (f"SVGTModel(backbone={self.backbone.name!r}, value_module={self.guided.artifact!r}, "
                f"insert_layer={c.insert_layer}, margin={c.margin:g}, gate_threshold={c.gate_threshold}"
                + (f", value_spaces={c.value_spaces})" if c.value_spaces > 1 else ")"))


def _is_single(inputs: Any) -> bool:
    """A string or one messages list (a list of dicts) is one prompt; any other list is a batch."""
    return isinstance(inputs, str) or (isinstance(inputs, list) and bool(inputs) and isinstance(inputs[0], dict))
