"""What a stage-3 training step costs: the default step against the reference one, timed in pairs on a real backbone.

The default step runs the prompt once, without gradients, into a KV cache and then only `[Bridge Tokens ; target]`,
asking for the target's logits only. The reference (`Stage3Batcher(prefix_cache=False)`) runs one full forward over
`[prompt ; bridge ; target]` with every position's logits, as stage 3 did before. Both give the same loss and bridge
gradient (checked here once, and by the tests); this prints the gap and the paired time ratios of a loss + backward
on one batch, with the backbone's shipped module. Prompts of 20-90 random words and 60-word targets, cut to the
training limits (128 and 48 tokens).

    .venv/bin/python benchmarks/stage3_step.py                              # SmolLM2, 5 pairs, batch 8
    .venv/bin/python benchmarks/stage3_step.py --backbone gemma-3-270m
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from svgt.config import TrainConfig
from svgt.pipeline import load_guided_model
from svgt.training.activations import encode_pair
from svgt.training.stages import Stage3Batcher

WORDS = "the a garden history river quickly explain how why people city water energy music".split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="smollm2-135m-instruct")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    gm = load_guided_model(args.backbone)
    cfg, rng = TrainConfig(), random.Random(0)
    examples = [encode_pair(gm.backbone, " ".join(rng.choices(WORDS, k=rng.randint(20, 90))),
                            " ".join(rng.choices(WORDS, k=60)), cfg.max_prompt_tokens, cfg.max_response_tokens)
                for _ in range(args.batch)]
    batcher = Stage3Batcher(gm.backbone, gm.module, examples, cfg)
    idx = torch.arange(args.batch)

    def step(prefix_cache: bool) -> tuple[float, float, list[torch.Tensor]]:
        batcher.prefix_cache = prefix_cache
        gm.module.zero_grad()
        start = time.perf_counter()
        loss = batcher.loss(idx)[0]
        loss.backward()
        grads = [p.grad.clone() for p in gm.module.bridge.parameters() if p.grad is not None]
        return time.perf_counter() - start, loss.item(), grads

    (_, fast_loss, fast_grads), (_, ref_loss, ref_grads) = step(True), step(False)  # also the warm-up
    gap = max(float((a - b).norm() / b.norm()) for a, b in zip(fast_grads, ref_grads))
    print(f"{args.backbone}: loss {fast_loss:.6f} (reference {ref_loss:.6f}); largest relative gradient gap {gap:.1e}")
    ratios = []
    for _ in range(args.pairs):
        fast, ref = step(True)[0], step(False)[0]
        ratios.append(fast / ref)
        print(f"  default {fast:.2f} s, reference {ref:.2f} s: {fast / ref:.3f}")
    print(f"median default / reference time: {statistics.median(ratios):.3f} over {args.pairs} pairs")


if __name__ == "__main__":
    main()
