#!/usr/bin/env python
"""What each trained module's stored tuning search would choose under two ways of counting over-refusal: the rule in
use (`svgt.methods.tuning.select`: each benign column's refusal rate, capped at `--cap` on every column, else the
lowest worst column) and the same rule on the refusals a setting *adds* over the unguided backbone's own on that
column. No generation: every rate is read from the search in each run's metrics.json, the unguided ones from its
`tuning.unguided`. Tuning data only; it chooses nothing and changes no artifact.

Why look: on SmolLM2 the backbone alone refuses 22.8% of the edgy tuning column, so no setting of any method can get
every column under a 10% cap and the rule falls back to the lowest worst column, which the edgy column decides. The
rule is shared with every baseline (docs/evaluation.md), so switching it means choosing theirs again; this script
shows what the switch would do to svgt's own choices first.

    .venv/bin/python scripts/selection_rules.py src/svgt/artifacts/smollm2-135m-instruct runs/v10-l27
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from svgt.methods.tuning import select


def _load_tuning(run: Path) -> dict[str, Any]:
    """`run`'s stored tuning check, with its search and unguided rates (raises, naming what is missing)."""
    path = run / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (expected an `svgt train` output folder or a shipped artifact)")
    tuning = json.loads(path.read_text()).get("tuning") or {}
    if not tuning.get("margin", {}).get("search") or not tuning.get("unguided"):
        raise ValueError(f"{path}: no 'tuning.margin.search' or 'tuning.unguided' (the run skipped its tuning check)")
    return tuning


def added_rows(search: list[dict[str, Any]], unguided: dict[str, float]) -> list[dict[str, Any]]:
    """The rows with `tune_overrefusal` the worst benign column's refusal *above the unguided backbone's* (never
    below 0: a setting that talks the backbone out of its own refusals gains nothing here)."""
    rows = []
    for r in search:
        benign = [k for k in r["rates"] if k != "harmbench_val_refusal"]
        worst = max(max(0.0, r["rates"][k] - unguided.get(k, 0.0)) for k in benign)
        rows.append({**r, "tune_overrefusal": worst})
    return rows


def counts(rates: dict[str, float], n: dict[str, int]) -> str:
    """Rates as counts of each column's prompts (`n`, by rate name)."""
    return ", ".join(f"{k.removesuffix('_refusal')} {round(v * n.get(k, 0))}/{n.get(k, '?')}" for k, v in rates.items())


def describe(row: dict[str, Any], n: dict[str, int]) -> str:
    p = row["params"]
    return f"gate {p['gate_threshold']}, margin {p['margin']:g}: {counts(row['rates'], n)}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="svgt train output folders (or artifacts) holding a tuning search")
    ap.add_argument("--cap", type=float, default=0.10, help="over-refusal cap on every benign column (default 0.10)")
    args = ap.parse_args(argv)
    for run in map(Path, args.runs):
        try:
            tuning = _load_tuning(run)
        except (OSError, ValueError) as err:
            print(f"selection_rules: {err}", file=sys.stderr)
            return 2
        search, stored = tuning["margin"]["search"], tuning["margin"]
        n = {f"{k.removesuffix('_n')}_refusal": v for k, v in tuning.items() if k.endswith("_n")}
        raw, added = select(search, args.cap), select(added_rows(search, tuning["unguided"]), args.cap)
        print(f"{run}: stored choice gate {stored['gate_threshold']}, margin {stored['chosen']:g}")
        print(f"  unguided: {counts(tuning['unguided'], n)}")
        print(f"  rates as they are:   {describe(raw, n)}")
        print(f"  refusals added:      {describe(added, n)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
