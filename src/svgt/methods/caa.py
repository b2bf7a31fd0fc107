"""`caa`: contrastive activation addition (Rimsky et al., 2024).

CAA steers along the difference between activations of a behaviour and its opposite. `contrast="responses"` (the
default) is that recipe with refusal as the behaviour: for harmful training prompts, layer l's output averaged over
the tokens of a refusal (`refusal_for`) minus the same over the backbone's own complying answer, teacher-forced
after the same prompt (`svgt.methods.pairs`, the pairs DPO learns from), averaged over pairs.
`contrast="prompts"` takes the last prompt token's output over harmful minus benign training prompts instead: a
"harmfulness" direction, which only steers toward refusal in a backbone that already refuses what it reads as
harmful (on SmolLM2-135M it made no candidate refuse anything on the tuning set). While steering,
`multiplier * v_l` is added to layer l's output at every position (prompt and generated). Layer and multiplier are
chosen on the tuning set.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch

from ..backbone import Backbone
from .base import Method, MethodContext
from .pairs import check_contrast, refusal_pairs
from .steering import (add_to_output, attached, choose, depth_candidates, last_token_activations,
                       response_activations, subsample)


def response_contrast_vectors(backbone: Backbone, pairs: list[dict[str, str]], layers: Sequence[int],
                              max_response_tokens: int = 32, batch_size: int = 16) -> dict[int, torch.Tensor]:
    """Per layer, the mean over `pairs` of (output averaged over the `chosen` response) minus (the same over the
    `rejected` one), both after the pair's prompt (float32, CPU)."""
    modules = [backbone.layers[i] for i in layers]
    prompts = [p["prompt"] for p in pairs]
    chosen, rejected = (response_activations(backbone, prompts, [p[side] for p in pairs], modules,
                                             max_response_tokens=max_response_tokens, batch_size=batch_size)
                        for side in ("chosen", "rejected"))
    return {layer: (c - r).mean(0) for layer, c, r in zip(layers, chosen, rejected)}


def mean_difference_vectors(backbone: Backbone, harmful: list[str], benign: list[str], layers: Sequence[int],
                            batch_size: int = 16) -> dict[int, torch.Tensor]:
    """Per layer, mean last-token output over `harmful` minus the mean over `benign` (float32, CPU)."""
    modules = [backbone.layers[i] for i in layers]
    acts_h = last_token_activations(backbone, harmful, modules, batch_size=batch_size)
    acts_b = last_token_activations(backbone, benign, modules, batch_size=batch_size)
    return {layer: h.mean(0) - b.mean(0) for layer, h, b in zip(layers, acts_h, acts_b)}


class CAAMethod(Method):
    name = "caa"
    uses_backbone_answers = True

    def __init__(self, layers: Sequence[int] | None = None, multipliers: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
                 max_train: int = 256, tune_limit: int = 30, tune_max_new_tokens: int = 24, batch_size: int = 16,
                 contrast: str = "responses"):
        """`layers`: candidate layers (default: 1/3, 1/2, 2/3 of depth); the grid is layers x multipliers.
        `contrast`: "responses" (refusal vs the backbone's answer) or "prompts" (harmful vs benign prompts)."""
        super().__init__()
        self.contrast = check_contrast("caa", contrast)
        self.layers = list(layers) if layers is not None else None
        self.multipliers = list(multipliers)
        self.max_train = max_train
        self.tune_limit, self.tune_max_new_tokens, self.batch_size = tune_limit, tune_max_new_tokens, batch_size
        self.vectors: dict[int, torch.Tensor] = {}

    def prepare(self, ctx: MethodContext) -> dict[str, Any]:
        self.backbone = bb = ctx.backbone
        layers = self.layers if self.layers is not None else depth_candidates(bb.num_layers)
        self.params = {"layer": layers[len(layers) // 2], "multiplier": self.multipliers[0],
                       "contrast": self.contrast}
        if self.contrast == "responses":
            pairs = refusal_pairs(ctx, self.max_train, self.name)
            self.vectors = response_contrast_vectors(bb, pairs, layers, batch_size=self.batch_size)
            self.params["n_pairs"] = len(pairs)
        else:
            harmful = subsample(ctx.train_harmful, self.max_train, ctx.seed)
            benign = subsample(ctx.train_benign, self.max_train, ctx.seed + 1)
            self.vectors = mean_difference_vectors(bb, harmful, benign, layers, self.batch_size)
            self.params.update(n_train_harmful=len(harmful), n_train_benign=len(benign))
        grid = [{"layer": layer, "multiplier": m} for layer in layers for m in self.multipliers]
        self.params, self.search = choose(self, grid, ctx, self.tune_limit, self.tune_max_new_tokens)
        self.params["vector_norm"] = float(self.vectors[self.params["layer"]].norm())
        return self.params

    def steering(self):
        return self._steer()

    @contextmanager
    def _steer(self) -> Iterator[None]:
        layer, multiplier = self.params["layer"], float(self.params["multiplier"])
        vector = (multiplier * self.vectors[layer]).to(self.backbone.device)
        with attached(lambda: add_to_output(self.backbone.layers[layer], vector)):
            yield
