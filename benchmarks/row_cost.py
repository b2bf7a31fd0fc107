"""Why a fast refresh costs what it does on a CPU: the cost of the backbone's linear layers at 1 row vs K + 1 rows.

A plain decoding step pushes 1 row through every decoder layer; a fused fast refresh pushes K + 1 (the new Bridge
Tokens ride along with the next token). Below the insert layer the K bridge rows are masked for every query and
overwritten at the insert layer, so their work there is wasted. This script times each linear layer of one decoder
layer at both row counts and scales by the layer count, so the waste can be read off directly.

    .venv/bin/python benchmarks/row_cost.py            # default backbone, K from the shipped module
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from svgt.pipeline import load_guided_model


def _ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="smollm2-135m-instruct")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    gm = load_guided_model(args.backbone)
    bb, cfg = gm.backbone, gm.module.config
    k = cfg.num_bridge_tokens
    linears = [m for m in bb.layers[0].modules() if isinstance(m, torch.nn.Linear)]
    with torch.inference_mode():
        per_layer = {}
        for rows in (1, k + 1):
            x = {m.in_features: torch.randn(1, rows, m.in_features) for m in linears}
            per_layer[rows] = sum(_ms(lambda m=m: m(x[m.in_features]), args.repeats) for m in linears)
    n, ins = bb.num_layers, cfg.insert_layer
    one, many = per_layer[1], per_layer[k + 1]
    print(f"backbone {bb.name}: {n} layers, insert layer {ins}, K = {k}, {torch.get_num_threads()} threads")
    print(f"linear layers of one decoder layer: {one:.3f} ms at 1 row, {many:.3f} ms at {k + 1} rows "
          f"({many / one:.2f}x)")
    print(f"whole stack, plain step:            {n * one:.2f} ms")
    print(f"whole stack, fused refresh now:     {n * many:.2f} ms")
    print(f"  with no bridge rows below layer {ins}: {ins * one + (n - ins) * many:.2f} ms")


if __name__ == "__main__":
    main()
