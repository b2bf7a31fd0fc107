"""Why the value module costs a refresh step about three times what it costs in a loop: its weights are read again
from memory after every backbone forward.

Times one refresh step's value-module work (the newest state's value state and score, the correction, the bridge;
as `GuidedDecoder` calls them) back to back ("warm"), and right after a decoding forward of the backbone over the
quick cell's cache ("cold", as in generation). Then the same for plain matrix products of known size, which have
no Python around them: if they slow down as much after a forward, the slowdown is the weights' reads, not the
interpreter. Medians of `--repeats` timings each.

    .venv/bin/python benchmarks/value_step_cache.py
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Any, Callable

import torch

from svgt.benchmark.models import bench_backbone, bench_module, prompt_batch
from svgt.hooks import BackboneHooks, cache_keyword, keep_logits, prompt_prefix


def _ms(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="smollm2-135m-instruct")
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    backbone = bench_backbone(args.backbone)
    module, source = bench_module(backbone)
    model, c = backbone.model, module.config
    ids, mask = prompt_batch(backbone, 1, 64)
    judge = module.judge
    with torch.inference_mode(), BackboneHooks(backbone.layers, c.insert_layer, c.extract_layer, None) as hooks:
        states, prefix = prompt_prefix(model, hooks, ids, mask)
        memory = judge.prompt_memory(states, mask.bool())
        h_v = states[:, -1]
        token_mask = torch.ones(1, ids.shape[1] + 1, dtype=mask.dtype)

        def forward() -> None:  # one plain decoding step over a copy of the prompt's cache
            model(input_ids=ids[:, -1:], attention_mask=token_mask, use_cache=True,
                  **{cache_keyword(model): copy.deepcopy(prefix)}, **keep_logits(model, 1))

    def value_step() -> None:
        z = judge.encode_step(h_v, memory)
        judge.score(z)
        delta_z, _ = judge.correction(z)
        module.bridge(h_v, delta_z)

    small = [torch.randn(128, 128) for _ in range(40)]
    large = [torch.randn(576, 576) for _ in range(6)]

    def products(weights: list[torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            x = torch.randn(1, weights[0].shape[0])
            for w in weights:
                x = x @ w
        return run

    pieces = [("value step (value state, score, correction, bridge)", value_step),
              ("40 products 1x128 @ 128x128 (2.6 MB of weights)", products(small)),
              ("6 products 1x576 @ 576x576 (8.0 MB of weights)", products(large))]
    print(f"{backbone.name} ({source}), batch 1, medians of {args.repeats}")
    print("| piece | warm ms | after a forward ms | ratio |")
    print("|---|---:|---:|---:|")
    with torch.inference_mode():
        for label, fn in pieces:
            fn()
            warm = statistics.median(_ms(fn) for _ in range(args.repeats))
            cold = []
            for _ in range(args.repeats):
                forward()
                cold.append(_ms(fn))
            after = statistics.median(cold)
            print(f"| {label} | {warm:.3f} | {after:.3f} | {after / warm:.2f} |")


if __name__ == "__main__":
    main()
