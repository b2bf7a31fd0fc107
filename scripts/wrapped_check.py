#!/usr/bin/env python
"""HarmBench val inside the held-out jailbreak-style wrappers, for trained artifacts: what `svgt train`'s tuning
check records as `tuning.wrapped` (refusal and looping, unguided and at the artifact's settings, and the first-bridge
AUROC against each benign tuning column), for a module trained before that check existed. Tuning data only.

    .venv/bin/python scripts/wrapped_check.py runs/v9 runs/w1
"""

from __future__ import annotations

import argparse
import json
import sys

from svgt.artifact import ArtifactError, load_pretrained, read_config
from svgt.backbone import load_backbone
from svgt.config import TrainConfig
from svgt.training.trainer import first_bridge_scores, tuning_sets_for, wrapped_check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifacts", nargs="+", help="artifact folders (svgt train --out) of one backbone")
    args = parser.parse_args(argv)
    try:  # every folder checked before any is scored: the same check load_pretrained makes
        configs = [read_config(a) for a in args.artifacts]
    except ArtifactError as exc:
        parser.error(f"{exc} (expected an `svgt train --out` folder)")
    backbone = load_backbone(configs[0]["backbone"]["name"])
    cfg = TrainConfig()
    sets = tuning_sets_for(cfg)
    for a in args.artifacts:
        module = load_pretrained(a, backbone).eval()
        scores = {name: first_bridge_scores(backbone, module, prompts) for name, prompts in sets.items()}
        print(a, json.dumps(wrapped_check(backbone, module, sets, scores, cfg)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
