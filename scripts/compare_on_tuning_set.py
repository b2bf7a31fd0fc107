"""Refusal rates of several trained modules on tuning-set columns they can all be compared on.

Each module's own `svgt train` run reports its tuning check, but runs with hard-negative mining hold out different
picks (and one run's held-out pick can be another's training pick). This script scores every module, at each margin,
on the held-out hard negatives that no given module trained on, plus any of the standard tuning columns asked for.
Tuning data only: no evaluation prompt is read.

    .venv/bin/python scripts/compare_on_tuning_set.py runs/v6 runs/v7 runs/v8 --margins 0 2 4 6 8 --sets hard edgy
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from svgt import data as svdata
from svgt.artifact import load_pretrained
from svgt.backbone import load_backbone
from svgt.config import GenerationConfig, TrainConfig
from svgt.generation import generate
from svgt.judges import refusal_rate
from svgt.training.mining import HARD_NEGATIVES_NAME, load_hard_negatives
from svgt.training.trainer import tuning_sets


SETS = {"hard": "heldout_hard", "edgy": "heldout_edgy", "harmbench_val": "harmbench_val", "benign": "heldout_benign"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("modules", nargs="+", type=Path, help="trained module directories (svgt train --out)")
    ap.add_argument("--margins", nargs="+", type=float, default=[0, 2, 4, 6])
    ap.add_argument("--sets", nargs="+", default=["hard"], choices=list(SETS))
    ap.add_argument("--backbone", default="smollm2-135m-instruct")
    ap.add_argument("--out", type=Path, help="write the table as JSON here")
    args = ap.parse_args()

    cfg = TrainConfig()
    corpus = svdata.build_corpus(seed=cfg.seed, max_sharegpt=cfg.max_sharegpt)
    picks = [load_hard_negatives(m / HARD_NEGATIVES_NAME) for m in args.modules if (m / HARD_NEGATIVES_NAME).exists()]
    trained = {p.prompt for mined in picks for p in mined.train}
    standard = tuning_sets(corpus)  # the tuning check's columns, except that the hard ones are no module's picks
    standard["heldout_hard"] = sorted({p.prompt for mined in picks for p in mined.heldout} - trained)
    sets = {name: standard[SETS[name]] for name in args.sets}
    print({name: len(prompts) for name, prompts in sets.items()}, flush=True)
    backbone = load_backbone(args.backbone)
    gen = GenerationConfig(max_new_tokens=cfg.eval_tokens)
    table = []
    for path in args.modules:
        module = load_pretrained(path, backbone).eval()
        for margin in args.margins:
            module.config.set_margin(margin)
            rates = {name: refusal_rate(generate(backbone, module, prompts, gen, batch_size=16).texts)
                     for name, prompts in sets.items()}
            table.append({"module": str(path), "margin": margin, **rates})
            print(json.dumps(table[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"n": {k: len(v) for k, v in sets.items()}, "rows": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
