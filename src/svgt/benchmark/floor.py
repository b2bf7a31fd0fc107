"""The floor a fast refresh cannot beat on this hardware: the cost of the Bridge Tokens' extra rows above the insert
layer.

A plain decoding step pushes 1 row per sequence through every decoder layer; a fused fast refresh pushes K + 1 (the
new Bridge Tokens ride along with the next token), but only from the insert layer up: below it the bridge rows are
dropped (`ForwardPlan.lower_skip`). Whatever the decoder does, those K rows must go through every layer above the
insert layer (projections, attention over the cache, norms, MLP), so a refresh step costs at least a plain step plus
that work. Timing the backbone's own decoding forward over a cache at 1 and at K + 1 new rows gives it on the machine
at hand; scaled to the layers above the insert layer and added to svgt's unguided decoding time (`svgt_off`, whose
loop is leaner than HF's `generate`), then divided by the baseline's time, it is the lowest ratio a guided variant
can reach, printed beside the measured one so that the gap to the physical limit (guidance's own work: the value
module, the bridge's masks and the writes of its entries over the old bridge's) is visible.
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from transformers import DynamicCache

from ..backbone import Backbone
from ..hooks import cache_keyword, keep_logits
from .measure import synchronize


@dataclass(frozen=True)
class RowCost:
    one_ms: float
    """A decoding forward at `batch` new rows (one per sequence) over a `context`-long cache, per decoder layer: a
    plain step's share of one layer."""
    many_ms: float
    """The same at `batch * (k + 1)` new rows: a fused refresh's share of one layer above the insert layer."""
    batch: int
    k: int
    layers: int
    insert_layer: int
    threads: int
    context: int = 0
    """Cached positions the timed forwards attend to (0: timed by an earlier version, linear layers only)."""

    @property
    def upper_layers(self) -> int:
        return self.layers - self.insert_layer

    @property
    def extra_ms(self) -> float:
        """What the bridge rows add to one refresh step: their work in every layer from the insert layer up."""
        return self.upper_layers * max(self.many_ms - self.one_ms, 0.0)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "upper_layers": self.upper_layers, "extra_ms": self.extra_ms}


def _timed_ms(fn, device: str) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return (time.perf_counter() - start) * 1e3


class RowTimer:
    """Times the backbone's decoding forward at `batch` and at `batch * (k + 1)` new rows over a `context`-long KV
    cache of random token ids. The cache is prefilled once, here, so that `svgt bench` can price the floor after every
    round without a prefill each time; every timed forward gets a fresh copy of it (copied outside the timing)."""

    def __init__(self, backbone: Backbone, k: int, insert_layer: int, *, batch: int = 1, context: int = 96) -> None:
        if k < 1 or batch < 1 or context < 1:
            raise ValueError(f"need k >= 1, batch >= 1 and context >= 1, got {k}, {batch}, {context}")
        self.backbone, self.k, self.insert_layer, self.batch, self.context = backbone, k, insert_layer, batch, context
        model = backbone.model
        vocab = int(model.get_input_embeddings().weight.shape[0])
        gen = torch.Generator().manual_seed(0)
        self.keep = keep_logits(model, 1)
        self.cache_kwarg = cache_keyword(model)
        self.counts = [1, k + 1]
        with torch.inference_mode():
            prefix = torch.randint(vocab, (batch, context), generator=gen).to(backbone.device)
            self.cache = DynamicCache()
            model(input_ids=prefix, use_cache=True, **{self.cache_kwarg: self.cache}, **self.keep)
            self.ids = {r: torch.randint(vocab, (batch, r), generator=gen).to(backbone.device) for r in self.counts}

    def __call__(self, repeats: int) -> RowCost:
        """Median of `repeats` forwards at each row count (after one warm-up pair), the two counts alternating so
        that drift in machine load hits both alike."""
        if repeats < 1:
            raise ValueError(f"need repeats >= 1, got {repeats}")
        model, device = self.backbone.model, str(self.backbone.device)
        times: dict[int, list[float]] = {r: [] for r in self.counts}
        with torch.inference_mode():
            for i in range(repeats + 1):  # the first pass is a warm-up
                for r in self.counts if i % 2 else self.counts[::-1]:
                    past = copy.deepcopy(self.cache)
                    ms = _timed_ms(lambda: model(input_ids=self.ids[r], use_cache=True, **{self.cache_kwarg: past},
                                                 **self.keep), device)
                    if i > 0:
                        times[r].append(ms)
        layers = self.backbone.num_layers
        one, many = (statistics.median(times[r]) / layers for r in self.counts)
        return RowCost(one, many, self.batch, self.k, layers, self.insert_layer, torch.get_num_threads(), self.context)


def row_cost(backbone: Backbone, k: int, insert_layer: int, *, batch: int = 1, repeats: int = 30,
             context: int = 96) -> RowCost:
    """The bridge rows' cost, timed once (`RowTimer`): the backbone's decoding forward at `batch` and at
    `batch * (k + 1)` new rows over a `context`-long KV cache, median of `repeats` forwards each.

    Only the last row's logits are computed at either count, as in decoding, so the LM head costs the same in both
    and cancels in `extra_ms`; the whole forward is divided by the layer count, since every decoder layer of a model
    has the same shapes. The default context is the quick cell's middle (a 64-token prompt, 8 bridge columns, half
    of 64 new tokens); `svgt bench` passes each cell's own."""
    if repeats < 1:
        raise ValueError(f"need repeats >= 1, got {repeats}")
    return RowTimer(backbone, k, insert_layer, batch=batch, context=context)(repeats)


def bridge_passes(refresh_every: int, new_tokens: int) -> int:
    """How often a generation of `new_tokens` pushes the K bridge rows through the upper layers: once for the first
    bridge, then at every refresh (decoding steps 1 .. new_tokens - 2 with step % refresh_every == 0; the last token
    needs no forward)."""
    refreshes = (new_tokens - 2) // refresh_every if refresh_every > 0 else 0
    return 1 + max(refreshes, 0)


def floor_ratio(cost: RowCost, refresh_every: int, new_tokens: int, baseline_s: float,
                unguided_s: float | None = None) -> float:
    """The lowest time over the baseline's a guided variant can reach: an unguided generation through svgt's own
    decoder (`unguided_s`, the `svgt_off` variant; the baseline's own time when not given) plus the bridge rows' work
    above the insert layer, and nothing else (the value module and the bridge's masks taken as free)."""
    start = baseline_s if unguided_s is None else unguided_s
    return (start + bridge_passes(refresh_every, new_tokens) * cost.extra_ms / 1e3) / baseline_s
