"""Where a guided variant's time goes, measured in place: per decoding step, the backbone's forward and each piece of
guidance's own work, and the refresh forward against plain forwards over the same cache.

`svgt bench` reports how far a variant sits above its floor; `benchmarks/profile_variant.py` lists functions under
a profiler, which inflates every Python call. This times the pieces with a clock while the variant generates as it
does in the bench (the quick cell), in two passes:

1. **Pieces**: the time spent in the backbone's forwards, in the value module (the step's value state, the
   correction, the bridge) and outside them (refresh inputs and masks, sampling, bookkeeping), per generation
   (median over `--repeats`).
2. **Forwards**: before each fused refresh forward, the same cache (copied) goes through the backbone unhooked at 1
   row and at K + 1 rows, then the refresh forward itself runs: the three are timed side by side, step after step,
   so the machine's changes of speed hit them alike. A refresh forward at "1 row + (upper layers / layers) × the
   rows' extra" is at the floor `svgt bench` prices.

    .venv/bin/python benchmarks/step_parts.py                    # svgt_r1_fast
    .venv/bin/python benchmarks/step_parts.py svgt_r5_fast --repeats 6
"""

from __future__ import annotations

import argparse
import collections
import copy
import statistics
import time
from typing import Any, Callable

import torch

from svgt.benchmark.models import bench_backbone, bench_module, prompt_batch
from svgt.benchmark.variants import make_runner, parse_variant
from svgt.bridge import LatentValueBridge
from svgt.generation import GuidedDecoder
from svgt.value_space import ValueSpace

PIECES: list[tuple[Any, str, str]] = [  # (owner, attribute, label)
    (GuidedDecoder, "_forward", "backbone forward"),
    (GuidedDecoder, "_observe", "value state of the newest token (encode + score)"),
    (ValueSpace, "correction", "correction Δz (score and gradient)"),
    (LatentValueBridge, "forward", "bridge from Δz"),
    (GuidedDecoder, "_bridge_and_token", "refresh inputs and masks"),
]


FORWARD = GuidedDecoder._forward


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return (time.perf_counter() - start) * 1e3, out


def pieces(run: Callable[[], Any], repeats: int) -> tuple[list[float], dict[str, list[tuple[int, float]]]]:
    """Per generation: its total ms, and per piece (calls, ms)."""
    spent: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    originals = {}
    for owner, name, label in PIECES:
        raw = owner.__dict__[name]
        fn = raw.__func__ if isinstance(raw, staticmethod) else raw
        originals[(owner, name)] = raw

        def timed(*args, _fn=fn, _label=label, **kwargs):
            ms, out = _timed(lambda: _fn(*args, **kwargs))
            if _fn is FORWARD:  # by how many rows it pushes: prompt, first bridge, refresh or plain step
                rows = args[1].shape[1]
                _label = f"{_label}: {rows} row{'' if rows == 1 else 's'}"
            spent[_label][0] += 1
            spent[_label][1] += ms
            return out

        setattr(owner, name, staticmethod(timed) if isinstance(raw, staticmethod) else timed)
    totals: list[float] = []
    per: dict[str, list[tuple[int, float]]] = collections.defaultdict(list)
    try:
        for _ in range(repeats):
            spent.clear()
            totals.append(_timed(run)[0])
            for label, (calls, ms) in spent.items():
                per[label].append((calls, ms))
    finally:
        for (owner, name), raw in originals.items():
            setattr(owner, name, raw)
    return totals, per


def forwards(run: Callable[[], Any], repeats: int) -> dict[str, list[float]]:
    """Per fused refresh forward: the unhooked backbone at 1 and K + 1 rows over copies of the same cache, and the
    refresh forward itself (ms)."""
    times: dict[str, list[float]] = collections.defaultdict(list)
    original = GuidedDecoder._forward

    def compare(self: GuidedDecoder, ids: torch.Tensor, positions: torch.Tensor, plan: Any) -> torch.Tensor:
        if ids.shape[1] == 1 or plan is None or plan.lower_skip is None:
            return original(self, ids, positions, plan)
        saved, attn, model = self.cache, self.attn, self.model
        past = saved.get_seq_length()
        for label, rows in (("plain, 1 row", 1), ("plain, K + 1 rows", ids.shape[1])):
            cache = copy.deepcopy(saved)
            cache.overwrite = None  # a plain forward appends its rows
            self.hooks.plan = None
            ms, _ = _timed(lambda: model(input_ids=ids[:, -rows:], attention_mask=attn[:, : past + rows],
                                         position_ids=positions[:, -rows:], use_cache=True,
                                         **{self.cache_kwarg: cache}, **self.keep_last))
            times[label].append(ms)
        ms, out = _timed(lambda: original(self, ids, positions, plan))
        times["fused refresh (svgt)"].append(ms)
        return out

    GuidedDecoder._forward = compare
    try:
        for _ in range(repeats):
            run()
    finally:
        GuidedDecoder._forward = original
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", nargs="?", default="svgt_r1_fast", help="a guided bench variant")
    parser.add_argument("--backbone", default="smollm2-135m-instruct")
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=4, help="generations per pass (after one warm-up)")
    args = parser.parse_args()
    try:
        variant = parse_variant(args.variant)
    except ValueError as exc:
        parser.error(str(exc))
    backbone = bench_backbone(args.backbone, "cpu", None)
    module, _ = bench_module(backbone)
    ids, mask = prompt_batch(backbone, 1, args.prompt)
    run = make_runner(variant, backbone, module, ids, mask, args.new)
    run()  # warm-up
    totals, per = pieces(run, args.repeats)
    print(f"{variant.name}, batch 1, prompt {args.prompt}, {args.new} new tokens: {statistics.median(totals):.0f} ms "
          f"a generation (median of {args.repeats})")
    print("| piece | calls | ms a generation | ms a call |\n|---|---:|---:|---:|")
    accounted = 0.0
    labels = sorted((k for k in per if k.startswith("backbone forward")), key=lambda k: -int(k.split()[-2]))
    labels += [label for _, _, label in PIECES[1:] if label in per]
    for label in labels:
        calls, ms = per[label][0][0], statistics.median(m for _, m in per[label])
        accounted += ms
        print(f"| {label} | {calls} | {ms:.1f} | {ms / calls:.2f} |")
    print(f"| the rest (sampling, bookkeeping, hooks outside forwards) | | "
          f"{statistics.median(totals) - accounted:.1f} | |")
    times = forwards(run, args.repeats)
    if times:
        c = module.config
        upper, layers = backbone.num_layers - c.insert_layer, backbone.num_layers
        one, many, fused = (statistics.median(times[k]) for k in
                            ("plain, 1 row", "plain, K + 1 rows", "fused refresh (svgt)"))
        print(f"\nrefresh forwards ({len(times['fused refresh (svgt)'])}), medians: plain 1 row {one:.2f} ms, plain "
              f"K + 1 rows {many:.2f} ms, fused refresh {fused:.2f} ms; at the floor: 1 row + {upper}/{layers} of "
              f"the rows' extra = {one + upper / layers * (many - one):.2f} ms")


if __name__ == "__main__":
    main()
