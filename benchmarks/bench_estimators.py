"""Would another statistic make `svgt bench` steadier? Other estimators of the same ratio, from the rounds that one or
more `svgt bench --quick --out DIR` runs already timed, so that their spread from run to run can be set beside the
reported one (the median paired ratio).

Per variant against `hf_generate`, for the first cell of each run:

- paired: the median over rounds of the round's time ratio over the baseline's run of that round (what `svgt bench`
  reported until 2026-12-05);
- bracketed: the same over the baseline's time interpolated to where the variant ran, between its round's baseline
  run and the next (what `svgt bench` reports since; for runs that did not record start times, each run is taken to
  start where the one before it in the round ended);
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

from svgt.benchmark.stats import bracketed_baselines

BASE = "hf_generate"


def _quartile(times: list[float]) -> float:
    return sorted(times)[len(times) // 4]


def _per_position(pick: Callable[[list[float]], float]) -> Callable[[dict[str, Any]], float]:
    def total(v: dict[str, Any]) -> float:
        return pick(v["ttfts_s"]) + sum(pick(list(col)) for col in zip(*v["step_ms_rounds"])) / 1e3
    return total


def _starts(cell: dict[str, Any]) -> dict[str, list[float]]:
    """Per variant, each round's start: as recorded, else back to back in the cell's order (the variants' order)."""
    names = [n for n in cell if "times_s" in cell[n]]
    if all("starts_s" in cell[n] for n in names):
        return {n: cell[n]["starts_s"] for n in names}
    starts: dict[str, list[float]] = {n: [] for n in names}
    clock = 0.0
    for r in range(len(cell[BASE]["times_s"])):
        for n in names:
            starts[n].append(clock)
            clock += cell[n]["times_s"][r]
    return starts


def _bracketed(cell: dict[str, Any], name: str) -> float:
    starts = _starts(cell)
    base = bracketed_baselines(starts[name], starts[BASE], cell[BASE]["times_s"])
    return statistics.median(t / u for t, u in zip(cell[name]["times_s"], base))


ESTIMATORS: dict[str, Callable[[dict[str, Any], str], float]] = {
    "paired": lambda c, n: statistics.median(t / u for t, u in zip(c[n]["times_s"], c[BASE]["times_s"])),
    "bracketed": _bracketed,
    "min": lambda c, n: min(c[n]["times_s"]) / min(c[BASE]["times_s"]),
    "q25": lambda c, n: _quartile(c[n]["times_s"]) / _quartile(c[BASE]["times_s"]),
    "envelope": lambda c, n: _per_position(min)(c[n]) / _per_position(min)(c[BASE]),
    "position median": lambda c, n: (_per_position(statistics.median)(c[n])
                                     / _per_position(statistics.median)(c[BASE])),
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
            values = [estimate(c, name) for c in cells]
            steps = [abs(a - b) / min(a, b) for a, b in zip(values, values[1:])]
            print(f"{name:14s} {label:16s} " + " ".join(f"{x:.3f}" for x in values)
                  + f"  spread {100 * (max(values) / min(values) - 1):.1f}%"
                  + ("  consecutive " + " ".join(f"{100 * d:.1f}%" for d in steps) if steps else ""))


if __name__ == "__main__":
    main()
