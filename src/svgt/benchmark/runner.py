"""`run_benchmark`: guided vs unguided decoding speed, interleaved in one process, paired ratios with intervals."""

from __future__ import annotations

import itertools
import math
import os
import statistics
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from ..backbone import DEFAULT_BACKBONE, Backbone
from .floor import RowCost, RowTimer, floor_ratio
from .measure import ForwardClock, environment, median, peak_memory, synchronize, token_times
from .models import bench_backbone, bench_module, parameter_count, prompt_batch
from .stats import LEVEL, RESAMPLES, SEED, TARGET, RatioInterval, bootstrap_ratio, bracketed_baselines, converged
from .variants import (
    ALL_VARIANTS, BASELINE, QUICK_VARIANTS, Outcome, Variant, make_runner, parse_variant, token_forwards,
    with_telemetry,
)

SCHEMA = "svgt-bench/1"
FULL_AXES = dict(batch_sizes=[1, 8], prompt_lens=[64, 512], new_tokens=[64, 512])
QUICK_AXES = dict(batch_sizes=[1], prompt_lens=[64], new_tokens=[64])
FLOOR_REPEATS = 9
"""Forwards at each row count per timed round for the floor (after one warm-up pair): about 1.3 s a round on the
default backbone, against ~18 s for the round's generations. With 3, the rows' extra per pass scattered 5-18 ms from
round to round and its median moved 8.2-11.1 ms between runs, 0.05 of the r=1 floor; with 9, 7.5-8.3 ms
(docs/speed.md)."""
MAX_SECONDS = 240.0
"""`--quick`'s default cap on a cell's timed rounds (wall clock): on a 2-core CPU about 13 rounds of the default
backbone's quick cell (~18 s a round), which reaches ±2% when a per-round ratio scatters by about 3%."""


def _log(enabled: bool, msg: str) -> None:
    if enabled:
        print(f"svgt bench: {msg}", file=sys.stderr, flush=True)


def _timed_run(runner, clock: ForwardClock, device: str, new: int) -> tuple[dict[str, Any], Outcome]:
    synchronize(device)
    with clock:
        start = time.perf_counter()
        outcome = runner()
        synchronize(device)
        end = time.perf_counter()
    ttft, steps = token_times(start, clock.stamps, new)
    record = {"start": start, "seconds": end - start, "ttft_s": ttft, "step_s": steps, "tokens": outcome.tokens,
              "forwards": len(clock.stamps)}
    return record, outcome


def _median_steps(runs: list[dict[str, Any]]) -> list[float]:
    """Per generated position, the median over repeats of that step's seconds."""
    return [statistics.median(col) for col in zip(*(r["step_s"] for r in runs))] if runs else []


def _summarise(v: Variant, runs: list[dict[str, Any]], batch: int, new: int) -> dict[str, Any]:
    times = [r["seconds"] for r in runs]
    med = median(times)
    steps = _median_steps(runs)
    tokens = sorted({t for r in runs for t in r["tokens"]})
    out = {
        "times_s": times,
        "ttfts_s": [r["ttft_s"] for r in runs],
        "median_s": med,
        "min_s": min(times),
        "tokens_per_s": batch * new / med,
        "ttft_s": median([r["ttft_s"] for r in runs]),
        "ms_per_token": 1000 * statistics.mean(steps) if steps else None,
        "step_ms": [round(1000 * s, 4) for s in steps],
        "step_ms_rounds": [[round(1000 * s, 4) for s in r["step_s"]] for r in runs],
        "tokens_generated": tokens[0] if len(tokens) == 1 else tokens,
        "lengths_match": tokens == [new],
        "forwards_per_generation": runs[0]["forwards"],
    }
    if v.kind == "svgt" and v.guidance and v.refresh_every and v.gate_threshold is None:
        # step_s[i] is decoding step i (it feeds token i and yields token i+1); steps i > 0, i % r == 0 refresh.
        split: dict[bool, list[float]] = {True: [], False: []}
        for i, sec in enumerate(steps):
            split[i > 0 and i % v.refresh_every == 0].append(sec)
        out["refresh_step_ms"] = 1000 * median(split[True]) if split[True] else None
        out["plain_step_ms"] = 1000 * median(split[False]) if split[False] else None
    return out


def _brackets(runs: list[dict[str, Any]], base: list[dict[str, Any]], closing: dict[str, Any] | None) -> list[float]:
    """Per round, the baseline's time interpolated to where each of `runs` started (`bracketed_baselines`)."""
    return bracketed_baselines([r["start"] for r in runs], [b["start"] for b in base], [b["seconds"] for b in base],
                               None if closing is None else (closing["start"], closing["seconds"]))


def _ratios(stats: dict[str, dict[str, Any]], base: str) -> None:
    """Per variant, its median paired ratio to `base` with the bootstrap interval, written into `stats` (`ratio`,
    `ratio_ci`, or `ratio_vs_<base>`, `ratio_vs_<base>_ci`); `ratio_of_medians` keeps the unpaired figure. Against
    the baseline each round divides by `baseline_s`, the baseline's time bracketed to where the variant ran; against
    another variant, by that variant's time in the round."""
    if base not in stats or "median_s" not in stats[base]:
        return
    b = stats[base]
    key = "ratio" if base == BASELINE else f"ratio_vs_{base}"
    for s in stats.values():
        if "median_s" not in s:
            continue
        iv = bootstrap_ratio([(s["times_s"], s["baseline_s"] if base == BASELINE else b["times_s"])])
        s[key], s[f"{key}_ci"] = iv.median, iv.as_list()
        if base == BASELINE:
            s["paired_ratio"] = iv.median  # the same figure, under the name earlier results used for it
            s["ratio_of_medians"] = s["median_s"] / b["median_s"]


def _stop(intervals: dict[str, RatioInterval], elapsed: float, round_s: float, max_seconds: float,
          target: float) -> str | None:
    """Why to stop adding rounds, or None to go on: every interval (the baseline's own aside) within ±target, else
    the time cap, when one more round of the length seen so far would pass it."""
    if converged([iv for name, iv in intervals.items() if name != BASELINE], target):
        return "converged"
    if elapsed + round_s > max_seconds:
        return "time cap"
    return None


def _run_cell(backbone: Backbone, module, variants: list[Variant], batch: int, prompt: int, new: int, *,
              repeats: int, warmup: int, device: str, memory: bool, time_limit_s: float | None,
              progress: bool, adaptive: bool = False, max_seconds: float = MAX_SECONDS,
              target: float = TARGET, floor: bool = False) -> dict[str, Any]:
    """Warm-up rounds, then timed rounds: `repeats` of them, or with `adaptive` at least `repeats` and then more
    until every variant's interval is within ±`target` of its median ratio or the timed rounds would pass
    `max_seconds`; then the untimed passes (memory, gate telemetry). With `floor`, every timed round ends by timing
    the bridge rows' cost (`row_cost`), so that each round's floor is priced at that round's machine speed."""
    ids, mask = prompt_batch(backbone, batch, prompt)
    k = module.config.num_bridge_tokens
    runners = {v.name: make_runner(v, backbone, module, ids, mask, new) for v in variants}
    clock = ForwardClock(backbone.model, device)
    runs: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
    skipped: dict[str, str] = {}
    order: list[list[str]] = []
    rate: float | None = None  # seconds per token position, from the baseline's prefill in this cell
    # The cache a refresh attends to, halfway through the generation; prefilled once for every round's row cost.
    timer = RowTimer(backbone, k, module.config.insert_layer, batch=batch, context=prompt + k + new // 2) if (
        floor and k > 0) else None
    costs: list[RowCost] = []

    def allowed(v: Variant) -> bool:
        if v.name in skipped:
            return False
        if v.quadratic and time_limit_s is not None and rate is not None:
            estimate = token_forwards(v, batch, prompt, new, k) * rate
            if estimate > time_limit_s:
                skipped[v.name] = (f"estimated {estimate:.0f} s per generation (no cache: work grows with the square "
                                   f"of the length) > time limit {time_limit_s:g} s")
                return False
        return True

    def run_round(phase: str) -> None:
        nonlocal rate
        for v in variants:  # A B C ... A B C ...: every round runs each variant once, in the same order
            if not allowed(v):
                continue
            record, _ = _timed_run(runners[v.name], clock, device, new)
            order.append([phase, v.name])
            if v.name == BASELINE and rate is None:
                rate = record["ttft_s"] / (batch * prompt)
            if phase == "timed":
                runs[v.name].append(record)
            _log(progress, f"b={batch} p={prompt} n={new} {phase:6s} {v.name:18s} {record['seconds']:.3f} s")

    for _ in range(warmup):
        run_round("warmup")
    rounds, stopped, started = 0, "fixed", time.perf_counter()
    while True:
        run_round("timed")
        if timer is not None:
            costs.append(timer(FLOOR_REPEATS))
            order.append(["floor", "row_cost"])
        rounds += 1
        if rounds < repeats:
            continue
        if not adaptive:
            break
        elapsed = time.perf_counter() - started
        intervals = {name: bootstrap_ratio([([r["seconds"] for r in rs], _brackets(rs, runs[BASELINE], None))])
                     for name, rs in runs.items() if rs}
        reason = _stop(intervals, elapsed, elapsed / rounds, max_seconds, target)
        _log(progress, f"b={batch} p={prompt} n={new} round {rounds}: "
             + ", ".join(f"{n} {iv.median:.3f} ±{100 * iv.rel_halfwidth:.1f}%" for n, iv in intervals.items()
                         if n != BASELINE))
        if reason is not None:
            stopped = reason
            break
    closing = None
    if runs[BASELINE]:  # one more baseline run, so that the last round's variants are bracketed too
        closing, _ = _timed_run(runners[BASELINE], clock, device, new)
        order.append(["closing", BASELINE])
        _log(progress, f"b={batch} p={prompt} n={new} closing {BASELINE:18s} {closing['seconds']:.3f} s")
    timed_s = time.perf_counter() - started

    stats: dict[str, dict[str, Any]] = {}
    for v in variants:
        if v.name in skipped or not runs[v.name]:
            stats[v.name] = {"skipped": skipped.get(v.name, "not run")}
            continue
        stats[v.name] = _summarise(v, runs[v.name], batch, new)
        stats[v.name]["token_forwards"] = token_forwards(v, batch, prompt, new, k)
        stats[v.name]["starts_s"] = [r["start"] - started for r in runs[v.name]]
        stats[v.name]["baseline_s"] = _brackets(runs[v.name], runs[BASELINE], closing)
    _ratios(stats, BASELINE)
    _ratios(stats, "svgt_off")
    cell_floor = _floors(stats, variants, costs, new) if costs else None

    for v in variants:  # untimed passes, after the timed rounds: memory, and how often a gate let a refresh through
        if "skipped" in stats[v.name]:
            continue
        if memory:
            stats[v.name]["memory"] = peak_memory(runners[v.name], device)
            order.append(["memory", v.name])
        if v.gate_threshold is not None:
            tel = make_runner(with_telemetry(v), backbone, module, ids, mask, new)()
            stats[v.name].update(tel.info)
            order.append(["telemetry", v.name])
    cell = {"batch": batch, "prompt_len": prompt, "new_tokens": new, "rounds": rounds, "stopped": stopped,
            "timed_s": timed_s, "order": order, "variants": stats}
    if closing is not None:
        cell["closing_baseline"] = {"start_s": closing["start"] - started, "seconds": closing["seconds"]}
    if cell_floor is not None:
        cell["row_cost"] = cell_floor
    return cell


def _overall_ratios(cells: list[dict[str, Any]], names: list[str], key: str) -> dict[str, float]:
    """Per variant: the cell's `key` when there is one cell, else the geometric mean over the cells it ran in."""
    out = {}
    for name in names:
        values = [c["variants"][name][key] for c in cells if key in c["variants"].get(name, {})]
        if values:
            out[name] = math.exp(sum(math.log(x) for x in values) / len(values))
    return out


def _overall_intervals(cells: list[dict[str, Any]], names: list[str], base: str) -> dict[str, list[float]]:
    """Per variant: its interval against `base` (the cell's own with one cell; over several, the bootstrap of the
    geometric mean of the cells' median paired ratios, each cell resampled on its own)."""
    out = {}
    for name in names:
        samples = [(c["variants"][name]["times_s"],
                    c["variants"][name]["baseline_s"] if base == BASELINE else c["variants"][base]["times_s"])
                   for c in cells
                   if "times_s" in c["variants"].get(name, {}) and "times_s" in c["variants"].get(base, {})]
        if samples:
            out[name] = bootstrap_ratio(samples).as_list()
    return out


def _has_floor(v: Variant) -> bool:
    """Guided variants whose every bridge pass is the fused kind the floor prices: fast refresh (or none), no gate
    (a gate may skip bridges, so it can run under the floor)."""
    return v.kind == "svgt" and v.guidance and v.gate_threshold is None and (
        v.refresh_mode == "fast" or v.refresh_every == 0)


def _floors(stats: dict[str, dict[str, Any]], variants: list[Variant], costs: list[RowCost],
            new: int) -> dict[str, Any]:
    """Write each guided fast variant's `floor_ratio` and `gap_to_floor` (its ratio minus the floor) into `stats`,
    and return the row cost's summary (medians over rounds, and every round's `extra_ms`). A round's floor is
    `svgt_off`'s time in that round (the baseline's, if `svgt_off` did not run) plus the bridge passes priced at the
    row cost timed at the end of that round, over the baseline's time in that round (bracketed to where `svgt_off`
    ran, as its ratio is); `floor_ratio` is the median of the rounds' floors, so a slow stretch of the machine moves
    a round's floor with its ratio."""
    off_stats = stats.get("svgt_off", {})
    base = off_stats.get("baseline_s") or stats[BASELINE]["times_s"]
    off = off_stats.get("times_s") or base
    for v in variants:
        s = stats[v.name]
        if _has_floor(v) and "ratio" in s:
            s["floor_ratio"] = statistics.median(floor_ratio(c, v.refresh_every, new, b, u)
                                                 for c, b, u in zip(costs, base, off))
            s["gap_to_floor"] = s["ratio"] - s["floor_ratio"]
    typical = replace(costs[0], one_ms=statistics.median(c.one_ms for c in costs),
                      many_ms=statistics.median(c.many_ms for c in costs))
    return {**typical.to_json(), "rounds": len(costs), "extra_ms_rounds": [c.extra_ms for c in costs]}


def _stopped(cells: list[dict[str, Any]]) -> str:
    """The run's stopping reason: `fixed` (repeats as given), `converged` (every cell), else `time cap`."""
    reasons = {c["stopped"] for c in cells}
    return reasons.pop() if len(reasons) == 1 else "time cap" if "time cap" in reasons else "fixed"


def run_benchmark(
    backbone_spec: str | Backbone = DEFAULT_BACKBONE,
    *,
    quick: bool = False,
    batch_sizes: Sequence[int] | None = None,
    prompt_lens: Sequence[int] | None = None,
    new_tokens: Sequence[int] | None = None,
    variants: Sequence[str] | None = None,
    repeats: int | None = None,
    warmup: int | None = None,
    device: str = "cpu",
    out_dir: str | Path | None = None,
    dtype: Any = None,
    gate_threshold: float = 0.0,
    memory: bool = True,
    training: bool | None = None,
    time_limit_s: float | None = 60.0,
    progress: bool = False,
    adaptive: bool | None = None,
    max_seconds: float | None = None,
    target: float = TARGET,
    floor: bool | None = None,
    artifact: str | Path | None = None,
) -> dict[str, Any]:
    """Benchmark guided decoding against the backbone's own `generate`, in one process, variants interleaved.

    `backbone_spec`: a built-in name, hub id or path; `random:<name>` for random weights in a real model's shape
    (see `RANDOM_CONFIGS`); or a Backbone. `artifact`: a trained module's folder (default: the one shipped for the
    backbone, else an untrained module). `quick` fills every axis left as None with the quick setting (batch 1,
    prompt 64, 64 new tokens, hf_generate/svgt_off/svgt_r1_fast/svgt_r5_fast, at least 5 rounds, no training
    section).
    Every round runs each variant once, hf_generate first, in the order given; `result["cells"][i]["order"]`
    records what ran, phase by phase.
    Variants whose work grows with the square of the length (recompute, exact refresh) are skipped in a cell when
    their estimated time per generation passes `time_limit_s` (None: never). Writes JSON, Markdown and a plot to
    `out_dir` when given.

    Ratios are paired: per round, v's time over hf_generate's time in that round; `ratios[v]` is the median of those
    (one cell), or the geometric mean of the cells' medians over the cells v ran in, and `ratio_ci[v]` its seeded
    percentile-bootstrap 95% interval. `adaptive` (default: on with `quick`) treats `repeats` as a minimum and adds
    rounds until every interval is within ±`target` of its median or a cell's timed rounds would pass
    `max_seconds` (default 240 s of wall clock per cell); `stopped` says which (`fixed` without `adaptive`), `rounds`
    the fewest rounds of any cell. `floor` (default: on with `quick`) times the Bridge Tokens' extra rows above the
    insert layer on this machine at the end of every timed round and reports, per guided fast variant, the lowest
    ratio it could reach (`floor_ratios`: the median over rounds of each round's floor) and its gap to it.
    """
    axes = QUICK_AXES if quick else FULL_AXES
    batch_sizes = list(batch_sizes or axes["batch_sizes"])
    prompt_lens = list(prompt_lens or axes["prompt_lens"])
    new_tokens = list(new_tokens or axes["new_tokens"])
    names = list(variants or (QUICK_VARIANTS if quick else ALL_VARIANTS))
    repeats = repeats if repeats is not None else (5 if quick else 3)
    warmup = warmup if warmup is not None else 1
    training = (not quick) if training is None else training
    adaptive = quick if adaptive is None else adaptive
    max_seconds = MAX_SECONDS if max_seconds is None else max_seconds
    floor = quick if floor is None else floor
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if BASELINE not in names:
        raise ValueError(f"variants must include the baseline {BASELINE!r}: every ratio is measured against it")
    if min(new_tokens) < 2 or min(prompt_lens) < 1 or min(batch_sizes) < 1:
        raise ValueError("need new_tokens >= 2, prompt_lens >= 1 and batch_sizes >= 1")
    names = [BASELINE] + [n for n in dict.fromkeys(names) if n != BASELINE]
    parsed = [parse_variant(n, gate_threshold) for n in names]

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    env = environment(device)
    t0 = time.perf_counter()
    backbone = bench_backbone(backbone_spec, device, dtype)
    module, module_source = bench_module(backbone, artifact=artifact)
    load_s = time.perf_counter() - t0
    _log(progress, f"{backbone.name}: {parameter_count(backbone) / 1e6:.1f}M parameters on {device} ({load_s:.1f} s)")

    cells = []
    for batch, prompt, new in itertools.product(batch_sizes, prompt_lens, new_tokens):
        cells.append(_run_cell(backbone, module, parsed, batch, prompt, new, repeats=repeats, warmup=warmup,
                               device=device, memory=memory, time_limit_s=time_limit_s, progress=progress,
                               adaptive=adaptive, max_seconds=max_seconds, target=target, floor=floor))
    costs = [c["row_cost"] for c in cells if "row_cost" in c]

    result: dict[str, Any] = {
        "schema": SCHEMA,
        "started": started,
        "quick": quick,
        "backbone": {
            "spec": backbone_spec if isinstance(backbone_spec, str) else backbone.name, "name": backbone.name,
            "parameters": parameter_count(backbone), "hidden_size": backbone.hidden_size,
            "layers": backbone.num_layers, "dtype": str(backbone.dtype).replace("torch.", ""),
            "random_weights": backbone.name.startswith("random:"), "load_s": load_s,
        },
        "module": {
            "source": module_source, "bridge_tokens": module.config.num_bridge_tokens,
            "value_dim": module.config.value_dim, "extract_layer": module.config.extract_layer,
            "insert_layer": module.config.insert_layer,
        },
        "device": device,
        "environment": env,
        "settings": {
            "batch_sizes": batch_sizes, "prompt_lens": prompt_lens, "new_tokens": new_tokens, "variants": names,
            "repeats": repeats, "warmup": warmup, "gate_threshold": gate_threshold, "momentum": 0.5,
            "time_limit_s": time_limit_s, "memory": memory, "adaptive": adaptive, "target": target,
            "max_seconds": max_seconds if adaptive else None,
            "bootstrap": {"resamples": RESAMPLES, "level": LEVEL, "seed": SEED},
            "telemetry": "off in every svgt variant except those ending in _tel (and the untimed gate pass)",
        },
        "variant_descriptions": {v.name: v.describe() for v in parsed},
        "cells": cells,
        "stopped": _stopped(cells),
        "rounds": min(c["rounds"] for c in cells),
        "ratios": _overall_ratios(cells, names, "ratio"),
        "ratio_ci": _overall_intervals(cells, names, BASELINE),
        "ratios_vs_svgt_off": _overall_ratios(cells, names, "ratio_vs_svgt_off"),
        "ratio_vs_svgt_off_ci": _overall_intervals(cells, names, "svgt_off"),
    }
    if costs:
        result["floor"] = {"row_cost": costs, "what": (
            "lowest ratio a guided variant can reach here: per timed round, svgt_off's time plus, per bridge pass "
            "(the first bridge and every refresh), the K bridge rows' work in the layers from the insert layer up (a "
            "decoding forward over the cell's cache timed at 1 and K + 1 new rows per sequence at the end of the "
            "round), over hf_generate's time; the median over rounds")}
        result["floor_ratios"] = _overall_ratios(cells, names, "floor_ratio")
        result["gaps_to_floor"] = {n: result["ratios"][n] - f for n, f in result["floor_ratios"].items()}
    if training:
        from .training import training_throughput

        _log(progress, "training throughput")
        result["training"] = training_throughput(backbone, module, device, quick, progress)
    result["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    try:
        env["load_average_at_end"] = list(os.getloadavg())
    except OSError:
        pass
    if out_dir is not None:
        from .report import write_outputs

        result["files"] = write_outputs(result, Path(out_dir))
    return result
