"""The per-layer probe sweep: for a trained module's directory (added to its metrics.json), or for a backbone that has
no module yet, to choose its extract/insert layer from (written to probe_sweep.json), with `probe_sweep.png`.

`svgt train` runs it itself (`probe_sweep`, on by default); this script adds it to a run that did not, on the same
data (the corpus and contrast aims of the default TrainConfig and the run's seed), or runs it before any training on
a new backbone. Tuning data only.

    .venv/bin/python scripts/probe_layers.py runs/v9                     # the backbone named in the run
    .venv/bin/python scripts/probe_layers.py runs/gemma-probe --backbone gemma-3-270m
    .venv/bin/python scripts/probe_layers.py /tmp/probe-check --backbone gemma-3-270m --limit 4   # does it run?
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from svgt import data as svdata
from svgt.artifact import read_config
from svgt.backbone import DEFAULT_BACKBONE, Backbone, load_backbone
from svgt.config import TrainConfig
from svgt.training.trainer import METRICS_NAME, probe_sweep

SWEEP_NAME = "probe_sweep.json"


def quick_sweep(backbone: Backbone, corpus: Any, cfg: TrainConfig, out: Path, per_class: int) -> dict[str, Any]:
    """The sweep on its first `per_class` prompts of each label per set: shows that it runs on a backbone."""
    from svgt.training.probe import layer_sweep, limit_sets, plot_sweep
    from svgt.training.trainer import probe_sets

    train, test = probe_sets(corpus, cfg, per_class)
    result = layer_sweep(backbone, limit_sets(train, per_class), limit_sets(test, per_class))
    plot_sweep(result, out / "probe_sweep.png")
    return {**result, "limit_per_class": per_class}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a trained module directory (svgt train --out), or where to write the "
                                           "sweep of a backbone that has none")
    ap.add_argument("--backbone", default=None,
                    help=f"built-in name, hub id or path (default: the run's backbone, else {DEFAULT_BACKBONE})")
    ap.add_argument("--seed", type=int, default=None, help="data seed (default: the run's, else 0)")
    ap.add_argument("--limit", type=int, default=None, metavar="N",
                    help="only N prompts of each label per set: checks the sweep runs, measures nothing")
    args = ap.parse_args()
    saved = read_config(args.run) if (args.run / "svgt_config.json").is_file() else None
    seed = args.seed if args.seed is not None else (saved or {}).get("training", {}).get("seed", 0)
    cfg = TrainConfig(seed=seed)
    corpus = svdata.build_corpus(seed=cfg.seed, max_sharegpt=cfg.max_sharegpt)
    backbone = load_backbone(args.backbone or (saved or {}).get("backbone", {}).get("name", DEFAULT_BACKBONE))
    args.run.mkdir(parents=True, exist_ok=True)
    if args.limit is not None:
        result = quick_sweep(backbone, corpus, cfg, args.run, args.limit)
    else:
        result = probe_sweep(backbone, corpus, cfg, args.run, saved["module"]["extract_layer"] if saved else None)
    result["backbone"] = backbone.name
    if saved is None or args.limit is not None:  # nothing trained here (or only a check): the sweep on its own
        path = args.run / SWEEP_NAME
        path.write_text(json.dumps(result, indent=2) + "\n")
    else:
        path = args.run / METRICS_NAME
        metrics = json.loads(path.read_text()) if path.exists() else {}
        metrics["probe_sweep"] = result
        path.write_text(json.dumps(metrics, indent=2) + "\n")
    for name, curves in result["auroc"].items():
        best = max(result["layers"], key=lambda layer: curves["heldout_contrast"][layer])
        print(f"trained on {name}: held-out contrast AUROC best at layer {best} ({curves['heldout_contrast'][best]})")
    print(f"wrote the sweep into {path} and {args.run / 'probe_sweep.png'}")


if __name__ == "__main__":
    main()
