"""What more value spaces cost at decoding: one artifact against another on the same backbone, timed in pairs.

Both decode the same prompt greedily at batch 1 with the gate off (every prompt bridged) and a refresh every
`--refresh` tokens, so the value module is read at every refresh; each round times both back to back, in turns,
and the ratio of each round's times is reported: the median paired ratio with its bootstrap 95% interval
(`svgt.benchmark.stats`, as `svgt bench` reports ratios) and the range over the rounds. Prompts of 64 random words.

    .venv/bin/python benchmarks/value_spaces.py runs/v11                    # against the shipped module, r = 1
    .venv/bin/python benchmarks/value_spaces.py runs/v11 --refresh 5 --rounds 9
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from svgt import GenerationConfig, generate
from svgt.artifact import load_pretrained
from svgt.benchmark.stats import bootstrap_ratio, paired_ratios
from svgt.pipeline import load_guided_model

WORDS = "the a garden history river quickly explain how why people city water energy music".split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", help="the artifact to time against the backbone's shipped module")
    parser.add_argument("--backbone", default="smollm2-135m-instruct")
    parser.add_argument("--refresh", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    gm = load_guided_model(args.backbone)
    modules = {"shipped": gm.module, args.artifact: load_pretrained(args.artifact, gm.backbone)}
    prompt = " ".join(random.Random(0).choices(WORDS, k=64))
    cfg = GenerationConfig(max_new_tokens=args.tokens, refresh_every=args.refresh, gate_threshold=float("-inf"),
                           stop_at_eos=False, telemetry=False)
    for module in modules.values():  # warm-up
        generate(gm.backbone, module, [prompt], cfg)
    times: dict[str, list[float]] = {name: [] for name in modules}
    for r in range(args.rounds):
        order = list(modules) if r % 2 == 0 else list(reversed(modules))
        for name in order:
            start = time.perf_counter()
            with torch.inference_mode():
                generate(gm.backbone, modules[name], [prompt], cfg)
            times[name].append(time.perf_counter() - start)
    ratios = paired_ratios(times[args.artifact], times["shipped"])
    interval = bootstrap_ratio([(times[args.artifact], times["shipped"])])
    spaces = {name: m.config.value_spaces for name, m in modules.items()}
    print(f"value spaces {spaces}; {args.tokens} tokens, refresh every {args.refresh}, {args.rounds} rounds")
    for name, t in times.items():
        print(f"  {name}: median {statistics.median(t):.3f} s")
    print(f"  ratio {args.artifact} / shipped: median {interval.median:.3f}, 95% interval [{interval.lo:.3f}, "
          f"{interval.hi:.3f}], range over rounds [{min(ratios):.3f}, {max(ratios):.3f}]")


if __name__ == "__main__":
    main()
