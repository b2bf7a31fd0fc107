"""The per-layer probe sweep for a trained module's directory, added to its metrics.json (with `probe_sweep.png`).

`svgt train` runs it itself (`probe_sweep`, on by default); this script adds it to a run that did not, on the same
data (the corpus and contrast aims of the default TrainConfig and the run's seed). Tuning data only.

    .venv/bin/python scripts/probe_layers.py runs/v9
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from svgt import data as svdata
from svgt.artifact import read_config
from svgt.backbone import load_backbone
from svgt.config import TrainConfig
from svgt.training.trainer import METRICS_NAME, probe_sweep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a trained module directory (svgt train --out)")
    ap.add_argument("--backbone", default="smollm2-135m-instruct")
    args = ap.parse_args()
    saved = read_config(args.run)
    cfg = TrainConfig(seed=saved.get("training", {}).get("seed", 0))
    corpus = svdata.build_corpus(seed=cfg.seed, max_sharegpt=cfg.max_sharegpt)
    backbone = load_backbone(args.backbone)
    result = probe_sweep(backbone, corpus, cfg, args.run, saved["module"]["extract_layer"])
    path = args.run / METRICS_NAME
    metrics = json.loads(path.read_text()) if path.exists() else {}
    metrics["probe_sweep"] = result
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"wrote probe_sweep into {path} and {args.run / 'probe_sweep.png'}")


if __name__ == "__main__":
    main()
