"""Where a bench variant's time goes: cProfile of one generation of each named variant, on the quick cell.

The quick bench says how much slower guided decoding is and how far that sits above the floor (the bridge rows'
own work); this says what the rest is. svgt's own functions are listed by cumulative time (the backbone's forward,
the value module, the bridge's cache moves and hooks), after the profiled generation's total. The profiler adds its
own cost to every Python call, so read shares, not absolute times.

    .venv/bin/python benchmarks/profile_variant.py svgt_off svgt_r1_fast
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats

from svgt.benchmark.models import bench_backbone, bench_module, prompt_batch
from svgt.benchmark.variants import make_runner, parse_variant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="bench variant names, e.g. svgt_off svgt_r1_fast")
    parser.add_argument("--backbone", default="smollm2-135m-instruct")
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--lines", type=int, default=20, help="functions listed per variant")
    args = parser.parse_args()
    try:
        variants = [parse_variant(name) for name in args.variants]
    except ValueError as exc:
        parser.error(str(exc))
    backbone = bench_backbone(args.backbone, "cpu", None)
    module, _ = bench_module(backbone)
    ids, mask = prompt_batch(backbone, 1, args.prompt)
    for v in variants:
        run = make_runner(v, backbone, module, ids, mask, args.new)
        run()  # warm-up
        profile = cProfile.Profile()
        profile.enable()
        run()
        profile.disable()
        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out)
        print(f"{v.name}: {stats.total_tt:.3f} s for {args.new} tokens (profiled)")
        stats.sort_stats("cumulative").print_stats(r"svgt[/\\](?!benchmark)", args.lines)
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[-4000:])


if __name__ == "__main__":
    main()
