"""Ratios from paired rounds: the median of per-round ratios and its percentile-bootstrap interval.

Every round times each variant back to back, so a slow stretch of the machine (another job, a frequency drop) hits a
variant and the baseline of the same round alike. Dividing within a round, by the baseline's time interpolated to
where the variant ran (`bracketed_baselines`), cancels most of that drift; the median over rounds then ignores the
rounds it did not cancel. The interval says how far that median could move on a rerun, which is what a reader of
a speed table needs to know before comparing two figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

RESAMPLES = 2000
LEVEL = 0.95
SEED = 0
TARGET = 0.02
"""`--quick` adds rounds until every interval lies within this fraction of its median ratio."""


@dataclass(frozen=True)
class RatioInterval:
    median: float
    """Median over rounds of the per-round ratio (over several cells: the geometric mean of the cells' medians)."""
    lo: float
    hi: float
    rounds: int
    """Paired rounds behind it (over several cells: the fewest any cell had)."""

    @property
    def rel_halfwidth(self) -> float:
        """The interval's farther end from the median, as a fraction of the median: within ±x% means this <= x/100.
        The farther end, not (hi - lo) / 2, because a bootstrap interval of a median is often lopsided."""
        return max(self.median - self.lo, self.hi - self.median) / self.median

    def as_list(self) -> list[float]:
        return [self.lo, self.hi]


def paired_ratios(times: Sequence[float], base: Sequence[float]) -> list[float]:
    """Per round, the variant's time over the baseline's time of that same round."""
    if len(times) != len(base):
        raise ValueError(f"paired ratios need one baseline time per round: {len(times)} vs {len(base)}")
    return [t / b for t, b in zip(times, base)]


def bracketed_baselines(starts: Sequence[float], base_starts: Sequence[float], base_times: Sequence[float],
                        closing: tuple[float, float] | None = None) -> list[float]:
    """Per round, the baseline's time where the variant ran: interpolated geometrically, by start time, between the
    baseline run of that round and the next one (the next round's, or `closing` `(start, time)` after the last
    round); a round with no later baseline run keeps its own.

    The machine's speed wanders over seconds, not only from round to round: in the quick runs stored from
    2026-12-03 to 12-05 a variant timed right after `hf_generate` scattered about it by 0.02-0.03 in log time, one
    timed three runs later by up to 0.10. Bracketing cancels a drift that is linear over the round, so a variant's
    place in the round stops weighing on its ratio (docs/speed.md, "What is measured")."""
    if not len(starts) == len(base_starts) == len(base_times):
        raise ValueError(f"one baseline run per round: {len(starts)} starts, {len(base_starts)} baseline starts, "
                         f"{len(base_times)} baseline times")
    after = [*zip(base_starts[1:], base_times[1:])] + ([closing] if closing is not None else [])
    out = []
    for i, (start, s0, t0) in enumerate(zip(starts, base_starts, base_times)):
        if i >= len(after) or after[i][0] <= s0:
            out.append(t0)
            continue
        s1, t1 = after[i]
        w = min(max((start - s0) / (s1 - s0), 0.0), 1.0)
        out.append(t0 if w == 0 else math.exp((1 - w) * math.log(t0) + w * math.log(t1)))
    return out


def _median_rows(x: torch.Tensor) -> torch.Tensor:
    """Median of each row, averaging the middle two when the count is even (as `statistics.median` does)."""
    s = x.sort(dim=-1).values
    n = s.shape[-1]
    return (s[..., (n - 1) // 2] + s[..., n // 2]) / 2


def bootstrap_ratio(
    samples: Sequence[tuple[Sequence[float], Sequence[float]]],
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = SEED,
) -> RatioInterval:
    """The median paired ratio and its percentile-bootstrap interval, from `(variant times, baseline times)` of one
    cell, or of several cells (then the geometric mean of the cells' medians, each cell resampled on its own, as
    `ratios` over cells is a geometric mean).

    Seeded, so the same timings always give the same interval. Rounds are resampled whole (a ratio keeps its pair),
    which is what makes the interval a paired one."""
    if not samples:
        raise ValueError("no timings")
    gen = torch.Generator().manual_seed(seed)
    points, boots = [], []
    for times, base in samples:
        ratios = torch.tensor(paired_ratios(times, base), dtype=torch.float64)
        n = ratios.numel()
        if n == 0 or bool((ratios <= 0).any()):
            raise ValueError("need at least one round and positive times")
        points.append(_median_rows(ratios))
        boots.append(_median_rows(ratios[torch.randint(n, (resamples, n), generator=gen)]))
    if len(samples) == 1:
        point, boot = float(points[0]), boots[0]
    else:
        point = math.exp(float(torch.stack(points).log().mean()))
        boot = torch.stack(boots).log().mean(dim=0).exp()
    tail = (1 - level) / 2
    lo, hi = torch.quantile(boot, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    # A point estimate always lies inside its own interval; clamp away rounding at the last bit.
    return RatioInterval(point, min(lo, point), max(hi, point), min(len(t) for t, _ in samples))


def converged(intervals: Sequence[RatioInterval], target: float = TARGET) -> bool:
    """Every interval within ±target of its median."""
    return all(iv.rel_halfwidth <= target for iv in intervals)
