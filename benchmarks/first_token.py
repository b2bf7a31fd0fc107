"""What a guided first token saves by skipping work that nothing reads, timed in pairs against the same first token
with that work done:

- `--saving head` (default): the LM head in the prompt forward. A bridged prompt's first token is predicted at its
  last Bridge Token, so the prompt forward's logits are never read; over Gemma 3's 262k-token vocabulary the head is
  about half a decoding step.
- `--saving lower-layers`: the linear maps below the insert layer in the first bridge's forward (`IdleLinears`).
  Every row there is a Bridge Token, whose work in those layers is masked for every query and overwritten at the
  insert layer; at a few rows a layer's time is mostly reading its weights.

Each round times both back to back, in turns: the prompt forward, the value module's judgment, the first bridge's
forward and the first token's pick, at batch 1 with the gate off (every prompt bridged) on a prompt of `--length`
tokens of real text (`prompt_batch`, the bench's prompts). Reported: each one's median, and the median paired ratio
with its bootstrap 95% interval.

    .venv/bin/python benchmarks/first_token.py
    .venv/bin/python benchmarks/first_token.py --backbone gemma-3-270m
    .venv/bin/python benchmarks/first_token.py --saving lower-layers [--backbone gemma-3-270m]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from svgt import GenerationConfig, generation
from svgt.benchmark.models import bench_backbone, bench_module, prompt_batch
from svgt.benchmark.stats import bootstrap_ratio
from svgt.generation import GuidedDecoder
from svgt.hooks import IdleLinears


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="smollm2-135m-instruct")
    parser.add_argument("--saving", choices=["head", "lower-layers"], default="head")
    parser.add_argument("--length", type=int, default=64, help="prompt tokens (the quick bench's)")
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    backbone = bench_backbone(args.backbone)
    module, source = bench_module(backbone)
    ids, mask = prompt_batch(backbone, 1, args.length)
    cfg = GenerationConfig(max_new_tokens=1, stop_at_eos=False, telemetry=False, gate_threshold=float("-inf"))
    head = args.saving == "head"

    def first_token(skip: bool) -> float:
        if head:
            generation._DIRECT_HEAD[backbone.model] = skip
        else:
            generation.IdleLinears = IdleLinears if skip else (lambda modules: contextlib.nullcontext())
        start = time.perf_counter()
        GuidedDecoder(backbone, module, cfg).run(ids, mask)
        return time.perf_counter() - start

    with torch.inference_mode():
        GuidedDecoder(backbone, module, cfg).run(ids, mask)  # warm-up, and the head's check
        if head and not generation._DIRECT_HEAD.get(backbone.model):
            parser.error(f"{backbone.name}'s head does not give its logits when called alone: nothing is skipped")
        times: dict[bool, list[float]] = {True: [], False: []}
        for r in range(args.rounds):
            for skip in ((True, False) if r % 2 == 0 else (False, True)):
                times[skip].append(first_token(skip))
    generation._DIRECT_HEAD[backbone.model], generation.IdleLinears = True, IdleLinears
    interval = bootstrap_ratio([(times[True], times[False])])
    what = ("the head in the prompt forward" if head
            else f"the linear maps of layers 0-{module.config.insert_layer - 1} in the first bridge's forward")
    print(f"{backbone.name} ({source}), {args.length}-token prompt, batch 1, {args.rounds} rounds; {what}")
    for skip, t in times.items():
        print(f"  {'skipped' if skip else 'run'}: median {statistics.median(t) * 1e3:.1f} ms")
    print(f"  ratio skipped / run: median {interval.median:.3f}, 95% interval [{interval.lo:.3f}, {interval.hi:.3f}]")


if __name__ == "__main__":
    main()
