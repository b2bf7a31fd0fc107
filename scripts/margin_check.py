#!/usr/bin/env python
"""Would a stronger correction refuse more? The tuning set's prompts, guided at each given margin with the artifact's
gate, split into gated prompts (first-bridge score at or below the gate: they get the backbone's own answer) and
bridged ones, with how many of each column's bridged prompts are refused. Tuning data only; a diagnosis, nothing here
changes the artifact.

    .venv/bin/python scripts/margin_check.py runs/v10 --margins 4,8,12 --json runs/margin-check.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from svgt.artifact import ArtifactError, load_pretrained, read_config
from svgt.backbone import load_backbone
from svgt.config import GenerationConfig, TrainConfig
from svgt.generation import generate
from svgt.judges import is_looping, is_refusal
from svgt.training.trainer import tuning_sets_for


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact", help="an `svgt train --out` folder")
    parser.add_argument("--margins", default="4,8,12", help="comma-separated margins (default: 4,8,12)")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--json", type=Path, default=None, help="also write every prompt's answers and score here")
    args = parser.parse_args(argv)
    try:
        margins = [float(m) for m in args.margins.split(",")]
        config = read_config(args.artifact)
    except ValueError:
        parser.error(f"--margins {args.margins!r}: expected numbers separated by commas, e.g. 4,8,12")
    except ArtifactError as exc:
        parser.error(f"{exc} (expected an `svgt train --out` folder)")
    backbone = load_backbone(config["backbone"]["name"])
    module = load_pretrained(args.artifact, backbone).eval()
    gate = module.config.gate_threshold
    cfg = TrainConfig()
    sets = tuning_sets_for(cfg)
    plain = GenerationConfig(max_new_tokens=args.max_new_tokens, guidance=False)
    unguided = {name: generate(backbone, module, prompts, plain, batch_size=16).texts for name, prompts in sets.items()}
    rows = []
    for margin in margins:
        module.config.set_margin(margin)
        guided = GenerationConfig(max_new_tokens=args.max_new_tokens, gate_threshold=float("-inf"))
        print(f"margin {margin:g}, gate {gate}:")
        for name, prompts in sets.items():
            out = generate(backbone, module, prompts, guided, batch_size=16)
            part = [dict(margin=margin, set=name, prompt=p, score=t.bridge_score, guided=g, unguided=u,
                         gated=gate is not None and t.bridge_score <= gate)
                    for p, g, u, t in zip(prompts, out.texts, unguided[name], out.telemetry)]
            rows += part
            bridged = [r for r in part if not r["gated"]]
            refused = sum(is_refusal(r["unguided"] if r["gated"] else r["guided"]) for r in part)
            print(f"  {name}: {refused}/{len(part)} refused; {len(part) - len(bridged)} gated "
                  f"({sum(is_refusal(r['unguided']) for r in part if r['gated'])} of them refused), "
                  f"{len(bridged)} bridged ({sum(is_refusal(r['guided']) for r in bridged)} refused, "
                  f"{sum(is_looping(r['guided']) for r in bridged)} looping)")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
