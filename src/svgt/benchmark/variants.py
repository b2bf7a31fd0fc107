"""The decoding variants the benchmark compares, each a zero-argument callable over fixed prompt ids.

Every variant is greedy and generates exactly `new_tokens` tokens per row (no stopping at EOS), from the same
`(batch, prompt_len)` ids, so their times are comparable token for token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch

from ..backbone import Backbone
from ..config import GenerationConfig
from ..generation import GuidedDecoder
from ..hooks import BackboneHooks, bridged_forward
from ..module import ValueModule

QUICK_VARIANTS = ["hf_generate", "svgt_off", "svgt_r1_fast", "svgt_r5_fast"]
ALL_VARIANTS = [
    "hf_generate", "svgt_off", "svgt_r0",
    "svgt_r1_fast", "svgt_r1_exact", "svgt_r5_fast", "svgt_r5_exact", "svgt_r10_fast", "svgt_r10_exact",
    "svgt_r5_fast_tel", "svgt_gated", "recompute",
]
BASELINE = "hf_generate"
MOMENTUM = 0.5
_SVGT_RE = re.compile(r"svgt_r(\d+)(?:_(fast|exact))?(_tel)?")


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str
    """`hf` (model.generate), `svgt` (svgt's decoder) or `recompute` (no cache, a full forward per token)."""
    guidance: bool = False
    refresh_every: int = 0
    refresh_mode: str = "fast"
    telemetry: bool = False
    gate_threshold: float | None = None

    @property
    def quadratic(self) -> bool:
        """Work grows with the square of the generated length (so large cells may be skipped on a CPU)."""
        return self.kind == "recompute" or (self.refresh_mode == "exact" and self.refresh_every > 0)

    def describe(self) -> str:
        if self.kind == "hf":
            return "backbone's own model.generate (greedy, KV cache, min_new_tokens = max_new_tokens)"
        if self.kind == "recompute":
            return ("no KV cache: the whole [prompt; bridge; response] sequence through svgt.hooks.bridged_forward "
                    "every token, bridge refreshed every token (as the published SVGT code decodes)")
        if not self.guidance:
            return "svgt decoder, guidance off (plain KV-cached decoding through svgt's loop)"
        parts = ["svgt guided"]
        parts.append(f"refresh every {self.refresh_every} ({self.refresh_mode})" if self.refresh_every
                     else "bridge inserted once, no refresh")
        if self.gate_threshold is not None:
            parts.append(f"gated: no bridge while s <= {self.gate_threshold:g}")
        parts.append("telemetry on" if self.telemetry else "telemetry off")
        return ", ".join(parts)


def parse_variant(name: str, gate_threshold: float = 0.0) -> Variant:
    if name == "hf_generate":
        return Variant(name, "hf")
    if name == "recompute":
        return Variant(name, "recompute", guidance=True, refresh_every=1, refresh_mode="exact")
    if name == "svgt_off":
        return Variant(name, "svgt")
    if name == "svgt_gated":
        return Variant(name, "svgt", guidance=True, refresh_every=1, gate_threshold=gate_threshold)
    match = _SVGT_RE.fullmatch(name)
    if match:
        every, mode, tel = int(match.group(1)), match.group(2) or "fast", bool(match.group(3))
        if every == 0 and match.group(2):
            raise ValueError(f"variant {name!r}: svgt_r0 never refreshes, so it takes no refresh mode")
        return Variant(name, "svgt", guidance=True, refresh_every=every, refresh_mode=mode, telemetry=tel)
    raise ValueError(f"unknown variant {name!r}: use hf_generate, svgt_off, svgt_r<N>[_fast|_exact][_tel], "
                     "svgt_gated or recompute")


def token_forwards(v: Variant, batch: int, prompt: int, new: int, k: int) -> int:
    """Token positions pushed through the backbone for one generation (a rough cost, used to skip cells)."""
    if v.kind == "hf" or not v.guidance:
        return batch * (prompt + new)
    if v.kind == "recompute":
        return batch * (prompt + sum(prompt + k + t for t in range(new)))
    total = prompt + k + new
    if v.refresh_every:
        steps = range(v.refresh_every, new, v.refresh_every)
        total += sum(k + s for s in steps) if v.refresh_mode == "exact" else k * len(steps)
    return batch * total


@dataclass
class Outcome:
    tokens: list[int]
    """Tokens generated per row."""
    info: dict[str, Any]


def _hf(backbone: Backbone, ids: torch.Tensor, mask: torch.Tensor, new: int) -> Outcome:
    from transformers import GenerationConfig as HFGenerationConfig

    tok = backbone.tokenizer
    eos = getattr(backbone.model.generation_config, "eos_token_id", None) or tok.eos_token_id
    cfg = HFGenerationConfig(max_new_tokens=new, min_new_tokens=new, do_sample=False, num_beams=1,
                             pad_token_id=tok.pad_token_id, eos_token_id=eos)
    out = backbone.model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg)
    return Outcome([out.shape[1] - ids.shape[1]] * ids.shape[0], {})


def generation_config(v: Variant, new: int) -> GenerationConfig:
    """The decoding settings an svgt variant runs with: greedy, exactly `new` tokens."""
    # Only `svgt_gated` gates; every other variant bridges every row, whatever gate the module carries, so that
    # the ratios measure what the bridge costs.
    gate = v.gate_threshold if v.gate_threshold is not None else float("-inf")
    return GenerationConfig(max_new_tokens=new, do_sample=False, guidance=v.guidance, refresh_every=v.refresh_every,
                            refresh_mode=v.refresh_mode, momentum=MOMENTUM, gate_threshold=gate,
                            stop_at_eos=False, telemetry=v.telemetry)


def _svgt(backbone: Backbone, module: ValueModule, v: Variant, ids: torch.Tensor, mask: torch.Tensor,
          new: int) -> Outcome:
    cfg = generation_config(v, new)
    # GuidedDecoder.run is what svgt.generate runs per batch, minus the tokenisation of prompt strings (which
    # could not guarantee an exact token length, and which hf_generate does not pay either).
    result = GuidedDecoder(backbone, module, cfg).run(ids, mask)
    info: dict[str, Any] = {}
    if v.telemetry and v.guidance and v.refresh_every:
        chances = sum(1 for s in range(1, new - 1) if s % v.refresh_every == 0) * len(result.telemetry)
        done = sum(sum(t.refreshed) for t in result.telemetry)
        info = {"refreshes": done, "refresh_chances": chances, "refresh_fraction": done / chances if chances else 0.0,
                "mean_score": sum(sum(t.score) for t in result.telemetry)
                / max(1, sum(len(t.score) for t in result.telemetry))}
    return Outcome([len(r) for r in result.token_ids], info)


@torch.inference_mode()
def _recompute(backbone: Backbone, module: ValueModule, ids: torch.Tensor, mask: torch.Tensor, new: int) -> Outcome:
    """Naive guided decoding: every token reruns the full sequence (no cache) through the same bridged forward
    the cached decoder is checked against, with the bridge refreshed every token from the newest state."""
    c, vs, model = module.config, module.judge, backbone.model
    attn = getattr(model.config, "_attn_implementation", None)
    pad = backbone.tokenizer.pad_token_id or 0
    prompt_mask = mask.bool()
    with BackboneHooks(backbone.layers, c.insert_layer, c.extract_layer, attn) as hooks:
        bridged_forward(model, hooks, ids, mask, None, ids[:, :0])  # the prompt alone, for its states
        prompt_states = hooks.captured.float()
        state = vs.aggregator(prompt_states, prompt_mask)
        bridge = None
        generated = ids[:, :0]
        for step in range(new):
            if c.num_bridge_tokens:
                delta_z, _ = vs.correction(vs.encode(state, prompt_states, prompt_mask))
                fresh = module.bridge(state, delta_z)
                bridge = fresh if bridge is None else MOMENTUM * bridge + (1.0 - MOMENTUM) * fresh
            out = bridged_forward(model, hooks, ids, mask, bridge, generated, None, pad)
            token = out.logits[:, -1].float().argmax(-1)
            generated = torch.cat([generated, token[:, None]], dim=1)
            state = hooks.captured[:, -1].float()
    return Outcome([generated.shape[1]] * ids.shape[0], {})


def make_runner(v: Variant, backbone: Backbone, module: ValueModule, ids: torch.Tensor, mask: torch.Tensor,
                new: int) -> Callable[[], Outcome]:
    if v.kind == "hf":
        return lambda: _hf(backbone, ids, mask, new)
    if v.kind == "recompute":
        return lambda: _recompute(backbone, module, ids, mask, new)
    return lambda: _svgt(backbone, module, v, ids, mask, new)


def with_telemetry(v: Variant) -> Variant:
    return replace(v, telemetry=True)
