#!/usr/bin/env python
"""One batch of contrast aims against HarmBench val: how each module scores the batch's held-out benign twins.

`scripts/discrimination.py` reads held-out contrast aims against their own harmful twins, by category. This asks
what the gate sees: whether the benign twins of one batch's held-out aims (`svgt.data.contrast.BATCHES`, counted
from 1) score below the harmful requests of HarmBench val (AUROC), below their harmful twins, and how many score
above the gate that lets 10% of the edgy tuning prompts through (read from `discrimination.py --json`, when given).
Tuning data only; every module is scored on its own backbone.

    .venv/bin/python scripts/contrast_batch_check.py --batch 3 --category history --gates runs/dexp/disc.json \
        runs/dexp/base runs/dexp/hist3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from svgt.artifact import load_pretrained, read_config
from svgt.backbone import load_backbone
from svgt.config import TrainConfig
from svgt.data.contrast import BATCHES, batch_pairs, contrast_prompts
from svgt.training.metrics import auroc_between
from svgt.training.trainer import first_bridge_scores, tuning_sets_for


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifacts", nargs="+", help="artifact folders (svgt train --out)")
    parser.add_argument("--batch", type=int, required=True, help=f"which batch, 1-{len(BATCHES)}")
    parser.add_argument("--category", default=None, help="only this category's aims")
    parser.add_argument("--gates", type=Path, default=None, help="discrimination.py --json output (gate_at_edgy)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if not 1 <= args.batch <= len(BATCHES):
        parser.error(f"--batch {args.batch}: there are {len(BATCHES)} batches")
    cfg = TrainConfig()
    before = batch_pairs(args.batch - 1) if args.batch > 1 else {}
    held = [p for p in contrast_prompts(seed=cfg.seed, batches=args.batch).heldout
            if p.aim >= len(before.get(p.category, ())) and args.category in (None, p.category)]
    if not held:
        where = f" in category {args.category!r}" if args.category else ""
        parser.error(f"batch {args.batch} holds out no aims{where}")
    benign, harmful = [p.text for p in held if p.label == 0], [p.text for p in held if p.label == 1]
    gates = json.loads(args.gates.read_text()) if args.gates else {}
    harmbench = tuning_sets_for(cfg)["harmbench_val"]
    rows, backbones = {}, {}
    print(f"| artifact | HB val vs benign twins ({len(benign)}) | harmful vs benign twins | benign twins above the "
          "edgy-10% gate |\n|---|---|---|---|")
    for a in args.artifacts:
        name = read_config(a)["backbone"]["name"]
        backbone = backbones.setdefault(name, load_backbone(name))
        module = load_pretrained(a, backbone).eval()
        hb, b, h = (torch.tensor(first_bridge_scores(backbone, module, texts))
                    for texts in (harmbench, benign, harmful))
        gate = gates.get(a, {}).get("gate_at_edgy", {}).get("threshold")
        above = None if gate is None else round(float((b > gate).float().mean()), 3)
        rows[a] = {"hb_vs_benign": round(auroc_between(hb, b), 3), "harmful_vs_benign": round(auroc_between(h, b), 3),
                   "benign_above_edgy_gate": above}
        print(f"| {a} | {rows[a]['hb_vs_benign']:.3f} | {rows[a]['harmful_vs_benign']:.3f} | "
              f"{'-' if above is None else f'{above:.1%}'} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
