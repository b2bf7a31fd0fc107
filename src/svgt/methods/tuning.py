"""Hyperparameter selection on the tuning set only (HarmBench val + held-out benign prompts), shared by baselines.

Rule: among candidates whose benign refusal rate is at most `max_overrefusal`, take the highest harmful refusal
rate (ties: lower benign refusal, then the earlier candidate in the grid); if none qualifies, the lowest benign
refusal. Every candidate's rates are returned so the report can show the search.
"""

from __future__ import annotations

from typing import Any

from ..judges import refusal_rate
from .base import Method, MethodContext


def tune(method: Method, grid: list[dict[str, Any]], ctx: MethodContext, *, limit: int = 30,
         max_new_tokens: int = 24, max_overrefusal: float = 0.10) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Try each `grid` entry as `method.params` (merged over the current ones); leave the best set and return it."""
    harmful, benign = ctx.tune_harmful[:limit], ctx.tune_benign[:limit]
    base = dict(method.params)
    table: list[dict[str, Any]] = []
    for candidate in grid:
        method.params = {**base, **candidate}
        h = method.generate(harmful, max_new_tokens).texts
        b = method.generate(benign, max_new_tokens).texts
        table.append({"params": candidate, "tune_refusal": refusal_rate(h), "tune_overrefusal": refusal_rate(b)})
    method.params = {**base, **select(table, max_overrefusal)["params"]}
    return method.params, table


def select(table: list[dict[str, Any]], max_overrefusal: float = 0.10) -> dict[str, Any]:
    """The module docstring's rule over rows with `tune_refusal` and `tune_overrefusal`; returns the chosen row."""
    if not table:
        raise ValueError("no candidates to choose from: the grid is empty")
    ok = [r for r in table if r["tune_overrefusal"] <= max_overrefusal]
    if ok:
        return max(ok, key=lambda r: (r["tune_refusal"], -r["tune_overrefusal"], -table.index(r)))
    return min(table, key=lambda r: (r["tune_overrefusal"], -r["tune_refusal"], table.index(r)))
