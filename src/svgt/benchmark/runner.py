"""`run_benchmark`: guided vs unguided decoding speed, interleaved in one process, medians and ratios."""

from __future__ import annotations

import itertools
import math
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from ..backbone import DEFAULT_BACKBONE, Backbone
from .measure import ForwardClock, environment, median, peak_memory, synchronize, token_times
from .models import bench_backbone, bench_module, parameter_count, prompt_batch
from .variants import (
    ALL_VARIANTS, BASELINE, QUICK_VARIANTS, Outcome, Variant, make_runner, parse_variant, token_forwards,
    with_telemetry,
)

SCHEMA = "svgt-bench/1"
FULL_AXES = dict(batch_sizes=[1, 8], prompt_lens=[64, 512], new_tokens=[64, 512])
QUICK_AXES = dict(batch_sizes=[1], prompt_lens=[64], new_tokens=[64])


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
    record = {"seconds": end - start, "ttft_s": ttft, "step_s": steps, "tokens": outcome.tokens,
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


def _ratios(stats: dict[str, dict[str, Any]], base: str) -> None:
    if base not in stats or "median_s" not in stats[base]:
        return
    b = stats[base]
    for s in stats.values():
        if "median_s" not in s:
            continue
        key = "ratio" if base == BASELINE else f"ratio_vs_{base}"
        s[key] = s["median_s"] / b["median_s"]
        if base == BASELINE:
            s["paired_ratio"] = statistics.median(t / u for t, u in zip(s["times_s"], b["times_s"]))


def _run_cell(backbone: Backbone, module, variants: list[Variant], batch: int, prompt: int, new: int, *,
              repeats: int, warmup: int, device: str, memory: bool, time_limit_s: float | None,
              progress: bool) -> dict[str, Any]:
    ids, mask = prompt_batch(backbone, batch, prompt)
    k = module.config.num_bridge_tokens
    runners = {v.name: make_runner(v, backbone, module, ids, mask, new) for v in variants}
    clock = ForwardClock(backbone.model, device)
    runs: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
    skipped: dict[str, str] = {}
    order: list[list[str]] = []
    rate: float | None = None  # seconds per token position, from the baseline's prefill in this cell

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

    for phase, rounds in (("warmup", warmup), ("timed", repeats)):
        for _ in range(rounds):
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

    stats: dict[str, dict[str, Any]] = {}
    for v in variants:
        if v.name in skipped or not runs[v.name]:
            stats[v.name] = {"skipped": skipped.get(v.name, "not run")}
            continue
        stats[v.name] = _summarise(v, runs[v.name], batch, new)
        stats[v.name]["token_forwards"] = token_forwards(v, batch, prompt, new, k)
    _ratios(stats, BASELINE)
    _ratios(stats, "svgt_off")

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
    return {"batch": batch, "prompt_len": prompt, "new_tokens": new, "order": order, "variants": stats}


def _overall_ratios(cells: list[dict[str, Any]], names: list[str], key: str) -> dict[str, float]:
    """Per variant: the cell's ratio when there is one cell, else the geometric mean over the cells it ran in."""
    out = {}
    for name in names:
        values = [c["variants"][name][key] for c in cells if key in c["variants"].get(name, {})]
        if values:
            out[name] = math.exp(sum(math.log(x) for x in values) / len(values))
    return out


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
) -> dict[str, Any]:
    """Benchmark guided decoding against the backbone's own `generate`, in one process, variants interleaved.

    `backbone_spec`: a built-in name, hub id or path; `random:<name>` for random weights in a real model's shape
    (see `RANDOM_CONFIGS`); or a Backbone. `quick` fills every axis left as None with the quick setting (batch 1,
    prompt 64, 64 new tokens, hf_generate/svgt_off/svgt_r1_fast/svgt_r5_fast, 5 repeats, no training section).
    Every round runs each variant once, hf_generate first, in the order given; `result["cells"][i]["order"]`
    records what ran, phase by phase.
    Variants whose work grows with the square of the length (recompute, exact refresh) are skipped in a cell when
    their estimated time per generation passes `time_limit_s` (None: never). Writes JSON, Markdown and a plot to
    `out_dir` when given. Returns a JSON-able dict; `ratios[v]` is v's median time over hf_generate's (one cell),
    or the geometric mean of those per-cell ratios over the cells v ran in.
    """
    axes = QUICK_AXES if quick else FULL_AXES
    batch_sizes = list(batch_sizes or axes["batch_sizes"])
    prompt_lens = list(prompt_lens or axes["prompt_lens"])
    new_tokens = list(new_tokens or axes["new_tokens"])
    names = list(variants or (QUICK_VARIANTS if quick else ALL_VARIANTS))
    repeats = repeats if repeats is not None else (5 if quick else 3)
    warmup = warmup if warmup is not None else 1
    training = (not quick) if training is None else training
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
    module, module_source = bench_module(backbone)
    load_s = time.perf_counter() - t0
    _log(progress, f"{backbone.name}: {parameter_count(backbone) / 1e6:.1f}M parameters on {device} ({load_s:.1f} s)")

    cells = []
    for batch, prompt, new in itertools.product(batch_sizes, prompt_lens, new_tokens):
        cells.append(_run_cell(backbone, module, parsed, batch, prompt, new, repeats=repeats, warmup=warmup,
                               device=device, memory=memory, time_limit_s=time_limit_s, progress=progress))

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
            "time_limit_s": time_limit_s, "memory": memory,
            "telemetry": "off in every svgt variant except those ending in _tel (and the untimed gate pass)",
        },
        "variant_descriptions": {v.name: v.describe() for v in parsed},
        "cells": cells,
        "ratios": _overall_ratios(cells, names, "ratio"),
        "ratios_vs_svgt_off": _overall_ratios(cells, names, "ratio_vs_svgt_off"),
    }
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
