"""Would another statistic make `svgt bench` steadier? Other estimators of the same ratio, from the rounds that one or
more `svgt bench --quick --out DIR` runs already timed, so that their spread from run to run can be set beside the
reported one (the median paired ratio).

Per variant against `hf_generate`, for the first cell of each run:

- paired: the median over rounds of the round's time ratio (what `svgt bench` reports);
- min: the fastest round's time over the baseline's fastest;
- q25: the same with each one's 25th-percentile round;
- envelope: per token position the fastest time over rounds, summed with the fastest time to first token;
- position median: per token position the median time over rounds, summed with the median time to first token.

    .venv/bin/python benchmarks/bench_estimators.py runs/a/bench_quick.json runs/b/bench_quick.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any, Callable

BASE = "hf_generate"


def _quartile(times: list[float]) -> float:
    return sorted(times)[len(times) // 4]


def _per_position(pick: Callable[[list[float]], float]) -> Callable[[dict[str, Any]], float]:
    def total(v: dict[str, Any]) -> float:
        return pick(v["ttfts_s"]) + sum(pick(list(col)) for col in zip(*v["step_ms_rounds"])) / 1e3
    return total


ESTIMATORS: dict[str, Callable[[dict[str, Any], dict[str, Any]], float]] = {
    "paired": lambda v, b: statistics.median(t / u for t, u in zip(v["times_s"], b["times_s"])),
    "min": lambda v, b: min(v["times_s"]) / min(b["times_s"]),
    "q25": lambda v, b: _quartile(v["times_s"]) / _quartile(b["times_s"]),
    "envelope": lambda v, b: _per_position(min)(v) / _per_position(min)(b),
    "position median": lambda v, b: _per_position(statistics.median)(v) / _per_position(statistics.median)(b),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="bench_quick.json (or bench.json) files, in run order")
    args = parser.parse_args()
    cells = []
    for path in args.runs:
        variants = json.loads(path.read_text(encoding="utf-8"))["cells"][0]["variants"]
        if "step_ms_rounds" not in variants[BASE]:
            parser.error(f"{path}: no step_ms_rounds (written by svgt bench from 2026-12-03 on)")
        cells.append(variants)
    names = [n for n in cells[0] if n != BASE and "times_s" in cells[0][n]]
    print(f"{len(cells)} runs; per estimator: each run's ratio, the spread (max over min) and consecutive runs' "
          "differences")
    for name in names:
        for label, estimate in ESTIMATORS.items():
            values = [estimate(c[name], c[BASE]) for c in cells]
            steps = [abs(a - b) / min(a, b) for a, b in zip(values, values[1:])]
            print(f"{name:14s} {label:16s} " + " ".join(f"{x:.3f}" for x in values)
                  + f"  spread {100 * (max(values) / min(values) - 1):.1f}%"
                  + ("  consecutive " + " ".join(f"{100 * d:.1f}%" for d in steps) if steps else ""))


if __name__ == "__main__":
    main()
