"""Small text renderings for terminals: sparklines of per-token scores, side-by-side answers."""

from __future__ import annotations

import textwrap

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], lo: float | None = None, hi: float | None = None, width: int = 60) -> str:
    """One character per value (subsampled to `width`), scaled between `lo` and `hi` (default: the data range)."""
    if not values:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [values[int(i * step)] for i in range(width)]
    lo = min(values) if lo is None else lo
    hi = max(values) if hi is None else hi
    span = hi - lo or 1.0
    idx = [min(len(_BARS) - 1, max(0, int((v - lo) / span * (len(_BARS) - 1) + 0.5))) for v in values]
    return "".join(_BARS[i] for i in idx)


def side_by_side(left_title: str, left: str, right_title: str, right: str, width: int = 100) -> str:
    col = (width - 3) // 2
    lw = textwrap.wrap(left, col) or [""]
    rw = textwrap.wrap(right, col) or [""]
    rows = [f"{left_title[:col]:<{col}} | {right_title[:col]}", f"{'-' * col}-+-{'-' * col}"]
    for i in range(max(len(lw), len(rw))):
        a = lw[i] if i < len(lw) else ""
        b = rw[i] if i < len(rw) else ""
        rows.append(f"{a:<{col}} | {b}")
    return "\n".join(rows)
