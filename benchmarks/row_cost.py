"""Why a fast refresh costs what it does: the backbone's decoding forward at 1 new row vs K + 1 new rows.

A plain decoding step pushes 1 row through every decoder layer; a fused fast refresh pushes K + 1 (the new Bridge
Tokens ride along with the next token). Below the insert layer the K bridge rows are masked for every query and
overwritten at the insert layer, so the decoder drops them there (`ForwardPlan.lower_skip`). This script times a
decoding forward over a KV cache at both row counts and divides by the layer count, so the waste that was removed and
the work that remains (the floor `svgt bench --quick` prints beside the r=1 ratio) can be read off directly. The
measurement itself is `svgt.benchmark.floor.row_cost`.

    .venv/bin/python benchmarks/row_cost.py            # default backbone, K from the shipped module
"""

from __future__ import annotations

import argparse

import torch

from svgt.benchmark.floor import row_cost
from svgt.pipeline import load_guided_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="smollm2-135m-instruct")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--context", type=int, default=96, help="cached positions the new rows attend to")
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    gm = load_guided_model(args.backbone)
    bb, cfg = gm.backbone, gm.module.config
    k = cfg.num_bridge_tokens
    cost = row_cost(bb, k, cfg.insert_layer, batch=args.batch, repeats=args.repeats, context=args.context)
    n, ins = bb.num_layers, cfg.insert_layer
    one, many = cost.one_ms, cost.many_ms
    rows = args.batch * (k + 1)
    print(f"backbone {bb.name}: {n} layers, insert layer {ins}, K = {k}, batch {args.batch}, "
          f"{torch.get_num_threads()} threads")
    print(f"one decoder layer's share of a decoding forward over {cost.context} cached positions: {one:.3f} ms at "
          f"{args.batch} row(s), {many:.3f} ms at {rows} rows ({many / one:.2f}x)")
    print(f"whole stack, plain step:            {n * one:.2f} ms")
    print(f"whole stack, all rows in every layer: {n * many:.2f} ms")
    print(f"  with no bridge rows below layer {ins} (today's fast refresh; the floor): "
          f"{ins * one + (n - ins) * many:.2f} ms (+{cost.extra_ms:.2f} ms over a plain step)")


if __name__ == "__main__":
    main()
