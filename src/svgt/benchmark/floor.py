"""The floor a fast refresh cannot beat on this hardware: the cost of the Bridge Tokens' extra rows above the insert
layer.

A plain decoding step pushes 1 row per sequence through every decoder layer; a fused fast refresh pushes K + 1 (the
new Bridge Tokens ride along with the next token), but only from the insert layer up: below it the bridge rows are
dropped (`ForwardPlan.lower_skip`). Whatever the decoder does, those K rows must go through the linear layers of the
layers above the insert layer, so a refresh step costs at least a plain step plus that work. Timing the linear layers
of one decoder layer at both row counts gives it on the machine at hand, in a few hundred small matmuls; divided by
the baseline's time it is the lowest ratio a guided variant can reach, printed beside the measured one so that the
gap to the physical limit is visible.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ..backbone import Backbone
from .measure import synchronize


@dataclass(frozen=True)
class RowCost:
    one_ms: float
    """Linear layers of one decoder layer at `batch` rows (one per sequence): a plain step's share."""
    many_ms: float
    """The same at `batch * (k + 1)` rows: a fused refresh's share above the insert layer."""
    batch: int
    k: int
    layers: int
    insert_layer: int
    threads: int

    @property
    def upper_layers(self) -> int:
        return self.layers - self.insert_layer

    @property
    def extra_ms(self) -> float:
        """What the bridge rows add to one refresh step: their linear work in every layer from the insert layer up."""
        return self.upper_layers * max(self.many_ms - self.one_ms, 0.0)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "upper_layers": self.upper_layers, "extra_ms": self.extra_ms}


def _linears(layer: nn.Module) -> list[tuple[nn.Module, int]]:
    """The layer's matmuls with their input width: `nn.Linear`, and GPT-2's `Conv1D` (weight stored transposed)."""
    out = []
    for m in layer.modules():
        if isinstance(m, nn.Linear):
            out.append((m, m.in_features))
        elif type(m).__name__ == "Conv1D" and getattr(m, "weight", None) is not None:
            out.append((m, m.weight.shape[0]))
    return out


def _median_ms(fn, repeats: int, device: str) -> float:
    fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def row_cost(backbone: Backbone, k: int, insert_layer: int, *, batch: int = 1, repeats: int = 50) -> RowCost:
    """Time the linear layers of the first decoder layer at `batch` rows and at `batch * (k + 1)` rows (median of
    `repeats` calls each, row counts alternating per layer so that drift in machine load hits both alike).

    All decoder layers of a model have the same shapes, so one layer times the layer count is the stack; attention,
    norms and the LM head are left out (they are either per-row cheap or the same in both steps)."""
    if k < 1 or batch < 1 or repeats < 1:
        raise ValueError(f"need k >= 1, batch >= 1 and repeats >= 1, got {k}, {batch}, {repeats}")
    linears = _linears(backbone.layers[0])
    if not linears:
        raise ValueError(f"{backbone.name}: no linear layers found in decoder layer 0")
    device = str(backbone.device)
    dtype = next(backbone.layers[0].parameters()).dtype
    totals = {1: 0.0, k + 1: 0.0}
    with torch.inference_mode():
        for m, width in linears:
            for rows in totals:
                x = torch.randn(batch, rows, width, device=backbone.device, dtype=dtype)
                totals[rows] += _median_ms(lambda m=m, x=x: m(x), repeats, device)
    return RowCost(totals[1], totals[k + 1], batch, k, backbone.num_layers, insert_layer, torch.get_num_threads())


def bridge_passes(refresh_every: int, new_tokens: int) -> int:
    """How often a generation of `new_tokens` pushes the K bridge rows through the upper layers: once for the first
    bridge, then at every refresh (decoding steps 1 .. new_tokens - 2 with step % refresh_every == 0; the last token
    needs no forward)."""
    refreshes = (new_tokens - 2) // refresh_every if refresh_every > 0 else 0
    return 1 + max(refreshes, 0)


def floor_ratio(cost: RowCost, refresh_every: int, new_tokens: int, baseline_s: float) -> float:
    """The lowest time over the baseline's a guided variant can reach: the baseline's own generation plus the bridge
    rows' work above the insert layer, and nothing else (svgt's loop and the value module taken as free)."""
    return 1.0 + bridge_passes(refresh_every, new_tokens) * cost.extra_ms / 1e3 / baseline_s
