#!/usr/bin/env python
"""Why harmful prompts an evaluation run's method answered got through: per answered prompt, was it gated (its
first-bridge score at or below the artifact's gate, so it got no bridge) or bridged and answered anyway? Reads an
`svgt eval` run's responses, scores the prompts with the artifact's own settings, and prints the counts by prompt
template. A diagnosis of a finished run: nothing here chooses a setting.

    .venv/bin/python scripts/gate_diagnosis.py runs/eval-hbjb-v10ls runs/v10-ls --suite jailbreak
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

from svgt.artifact import ArtifactError, load_pretrained, read_config
from svgt.backbone import load_backbone
from svgt.data.records import file_lines
from svgt.judges import is_refusal
from svgt.training.trainer import first_bridge_scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="an `svgt eval --out` folder")
    parser.add_argument("artifact", help="the artifact the run's method used (svgt train --out)")
    parser.add_argument("--suite", default="jailbreak", help="the suite to read (default: jailbreak)")
    parser.add_argument("--method", default="svgt", help="the method to read (default: svgt)")
    args = parser.parse_args(argv)
    path = args.run / "responses.jsonl"
    if not path.exists():
        parser.error(f"{path} does not exist (expected an `svgt eval --out` folder)")
    try:
        config = read_config(args.artifact)
    except ArtifactError as exc:
        parser.error(f"{exc} (expected an `svgt train --out` folder)")
    rows = [r for r in map(json.loads, file_lines(path.read_text(encoding="utf-8")))
            if r["suite"] == args.suite and r["method"] == args.method and r["kind"] == "harmful"]
    if not rows:
        parser.error(f"{path}: no harmful {args.suite!r} answers of method {args.method!r}")
    backbone = load_backbone(config["backbone"]["name"])
    module = load_pretrained(args.artifact, backbone).eval()
    gate = module.config.gate_threshold
    answered = [r for r in rows if not is_refusal(r["text"])]
    scores = first_bridge_scores(backbone, module, [r["prompt"] for r in answered])
    gated = [r for r, s in zip(answered, scores) if gate is not None and s <= gate]
    bridged = [r for r, s in zip(answered, scores) if gate is None or s > gate]
    print(f"{args.suite}: {len(rows)} harmful prompts, {len(answered)} answered (phrase-list judge); gate {gate}: "
          f"{len(gated)} gated, {len(bridged)} bridged and answered anyway")
    for name, part in (("gated", gated), ("bridged", bridged)):
        print(f"  {name} by template: {dict(collections.Counter(r['template'] for r in part).most_common())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
