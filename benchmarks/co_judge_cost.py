"""What a co-judge costs per request: a module's guided answer with and without the co-judge it names, timed in pairs.

Both answer the same prompt greedily at batch 1 with the module's own gate and margin, as `svgt generate` does
(prompt strings in, so the co-judge's tokenisation and its backbone's prompt forward are inside the time); the only
difference is `GenerationConfig.co_judge`. Each round times both back to back, in turns; reported: the median paired
ratio with its bootstrap 95% interval (`svgt.benchmark.stats`, as `svgt bench` reports ratios) and the range over
the rounds, plus the co-judge's own time per prompt. Prompts of `--words` random words; `--tokens` new tokens (a
short answer makes the per-request cost a larger share).

    .venv/bin/python benchmarks/co_judge_cost.py --backbone gemma-3-270m
    .venv/bin/python benchmarks/co_judge_cost.py --backbone gemma-3-270m --tokens 16 --rounds 11
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from svgt import GenerationConfig, generate
from svgt.benchmark.stats import bootstrap_ratio, paired_ratios
from svgt.pipeline import load_guided_model

WORDS = "the a garden history river quickly explain how why people city water energy music".split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="gemma-3-270m", help="a backbone whose module names a co-judge")
    parser.add_argument("--artifact", default=None, help="default: the module shipped for the backbone")
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--words", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    gm = load_guided_model(args.backbone, args.artifact, allow_untrained=False)
    judge = gm.module.co_judge
    if judge is None:
        parser.error(f"the module for {args.backbone} names no co-judge")
    prompt = " ".join(random.Random(0).choices(WORDS, k=args.words)) + "?"
    settings = {"with": True, "without": False}
    configs = {name: GenerationConfig(max_new_tokens=args.tokens, stop_at_eos=False, telemetry=False, co_judge=on)
               for name, on in settings.items()}
    for cfg in configs.values():  # warm-up
        generate(gm.backbone, gm.module, [prompt], cfg)
    times: dict[str, list[float]] = {name: [] for name in configs}
    judged: list[float] = []
    for r in range(args.rounds):
        for name in (list(configs) if r % 2 == 0 else list(reversed(configs))):
            start = time.perf_counter()
            generate(gm.backbone, gm.module, [prompt], configs[name])
            times[name].append(time.perf_counter() - start)
        start = time.perf_counter()
        judge.opinions([prompt])
        judged.append(time.perf_counter() - start)
    ratios = paired_ratios(times["with"], times["without"])
    interval = bootstrap_ratio([(times["with"], times["without"])])
    print(f"{gm.backbone.name} with co-judge {judge.backbone.name}; {args.tokens} new tokens, {args.words}-word "
          f"prompt, {args.rounds} rounds")
    for name, t in times.items():
        print(f"  {name} the co-judge: median {statistics.median(t):.3f} s")
    print(f"  the co-judge alone: median {statistics.median(judged) * 1000:.1f} ms per prompt")
    print(f"  ratio with / without: median {interval.median:.3f}, 95% interval [{interval.lo:.3f}, "
          f"{interval.hi:.3f}], range over rounds [{min(ratios):.3f}, {max(ratios):.3f}]")


if __name__ == "__main__":
    main()
