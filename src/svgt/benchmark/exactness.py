"""Cached guided decoding against full recomputation, on any device and dtype (tests/test_device.py and
scripts/gpu_check.sh).

Every step of `GuidedDecoder` reads logits from a KV cache that holds the prompt, the Bridge Tokens' K/V entries
(visible only from the insert layer up) and the tokens so far. A forward without a cache over the same sequence and
the same bridge (`bridged_forward`, the reference stage 3 trains on) must give the same logits. In float32 the two
differ by rounding only (~1e-6); in bfloat16, which keeps 8 significant bits, the two paths round differently in
every layer, so they agree to within a few bfloat16 steps of the logits' scale. A wrong cache entry (a bridge seen
below its insert layer, a position off by one) moves the logits by about their own size.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..backbone import Backbone
from ..config import GenerationConfig
from ..generation import GuidedDecoder
from ..hooks import BackboneHooks, bridged_forward
from ..module import ValueModule

FLOAT32_TOLERANCE = 1e-4
"""Largest gap between cached and recomputed logits in float32, absolute (tests/test_generation.py's bound)."""

BFLOAT16_TOLERANCE = 2.0**-5
"""Largest gap in bfloat16, relative to the largest recomputed logit: about four bfloat16 steps (2^-8 to 2^-7 of a
value, by where it lies in its binade) at the logits' scale, for two paths that round differently in every layer."""


def tolerance(dtype: torch.dtype) -> tuple[float, str]:
    """The bound for a backbone in `dtype`, and whether it is `absolute` or `relative` to the largest logit."""
    if dtype == torch.float32:
        return FLOAT32_TOLERANCE, "absolute"
    return BFLOAT16_TOLERANCE, "relative"


@torch.no_grad()
def recompute_gap(backbone: Backbone, module: ValueModule, ids: torch.Tensor, mask: torch.Tensor,
                  config: GenerationConfig) -> dict[str, Any]:
    """Decode `ids` (left-padded prompts, on the backbone's device) with `module`, then recompute every step's
    logits without a cache; returns the largest absolute gap, the largest recomputed logit, their ratio, the
    share of steps whose greedy token the recomputation agrees on, whether the gap is within `tolerance` (`ok`),
    and whether zeroing the bridge would move the logits past that bound (`visible`; else the check could not tell
    a wrong bridge from a right one)."""
    config = dataclasses.replace(config, stop_at_eos=False)  # every row runs every step
    result = GuidedDecoder(backbone, module, config).run(ids, mask, keep_logits=True)
    gen = torch.tensor(result.token_ids, device=ids.device)
    c = module.config
    gap = scale = effect = 0.0
    same = total = 0
    attn = getattr(backbone.model.config, "_attn_implementation", None)
    with BackboneHooks(backbone.layers, c.insert_layer, c.extract_layer, attn) as hooks:
        for t, (logits, bridge) in enumerate(zip(result.step_logits, result.step_bridges)):
            out = bridged_forward(backbone.model, hooks, ids, mask, bridge, gen[:, :t]).logits[:, -1].float()
            gap = max(gap, (out - logits.float()).abs().max().item())
            scale = max(scale, out.abs().max().item())
            same += int((out.argmax(-1) == logits.argmax(-1)).sum())
            total += out.shape[0]
            if bridge is not None:  # what wrong bridge entries would do: the same sequence with the bridge zeroed
                blank = bridged_forward(backbone.model, hooks, ids, mask, torch.zeros_like(bridge), gen[:, :t])
                effect = max(effect, (out - blank.logits[:, -1].float()).abs().max().item())
    bound, kind = tolerance(backbone.dtype)
    rel = 1.0 if kind == "absolute" else max(scale, 1e-6)
    return {"dtype": str(backbone.dtype).removeprefix("torch."), "steps": len(result.step_logits),
            "max_abs_gap": gap, "max_abs_logit": scale, "relative_gap": gap / max(scale, 1e-6),
            "bridge_effect": effect, "greedy_agreement": same / max(total, 1), "tolerance": bound,
            "tolerance_kind": kind, "ok": gap / rel <= bound, "visible": effect / rel > bound}
