#!/usr/bin/env python
"""Why an evaluation run's method got a prompt wrong, by the gate: per harmful prompt it answered, was it gated (its
first-bridge score at or below the artifact's gate, so it got no bridge) or bridged and answered anyway? Reads an
`svgt eval` run's responses, scores the prompts with the artifact's own settings, and prints the counts by prompt
template. A diagnosis of a finished run: nothing here chooses a setting.

    .venv/bin/python scripts/gate_diagnosis.py runs/eval-hbjb-v10ls runs/v10-ls --suite jailbreak

`--benign` reads the other side: per benign prompt the method refused, was the refusal the backbone's own (its
unguided greedy answer, as long as the run's, refuses too), or did a bridge add it? And, per source, how many of the
bridged prompts were refused, by how far their score is above the gate: whether added refusals come from prompts
scored just above the gate (small Newton steps) or from prompts the discriminator is sure of.

    .venv/bin/python scripts/gate_diagnosis.py runs/eval-l27 runs/v10-l27 --benign
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path
from typing import Any

from svgt.artifact import ArtifactError, load_pretrained, read_config
from svgt.backbone import load_backbone
from svgt.config import GenerationConfig
from svgt.data.records import file_lines
from svgt.generation import generate
from svgt.judges import is_refusal
from svgt.training.trainer import first_bridge_scores

BANDS = (2.0, 4.0, 8.0)
"""Bands of a bridged prompt's score above the gate: (0, 2], (2, 4], (4, 8], above 8."""


def band(above: float) -> str:
    """The `BANDS` band of a score `above` the gate by this much (> 0)."""
    low = 0.0
    for high in BANDS:
        if above <= high:
            return f"+({low:g}, {high:g}]"
        low = high
    return f"> +{low:g}"


def benign_tally(rows: list[dict[str, Any]], scores: list[float], own: dict[str, bool],
                 gate: float | None) -> dict[str, dict[str, Any]]:
    """Per source of benign `rows` (an eval run's answers, `scores` their first-bridge scores): how many there are,
    how many the method refused, of those how many the backbone refuses too (`own`, by prompt; asked only for the
    refused ones), how many refusals it added while gated (a refresh that bridged later) or bridged, and per score
    band above the gate the bridged prompts and how many of them were refused."""
    out: dict[str, dict[str, Any]] = {}
    for r, s in zip(rows, scores):
        t = out.setdefault(r["source"], {"n": 0, "refused": 0, "own": 0, "added_gated": 0, "added_bridged": 0,
                                         "bridged_by_band": {}})
        t["n"] += 1
        bridged = gate is None or s > gate
        if bridged:
            b = t["bridged_by_band"].setdefault("all" if gate is None else band(s - gate), [0, 0])
            b[0] += 1
        if not is_refusal(r["text"]):
            continue
        t["refused"] += 1
        if bridged:
            b[1] += 1
        if own[r["prompt"]]:
            t["own"] += 1
        else:
            t["added_bridged" if bridged else "added_gated"] += 1
    for t in out.values():
        t["bridged_by_band"] = dict(sorted(t["bridged_by_band"].items(), key=lambda kv: _band_order(kv[0])))
    return out


def _band_order(name: str) -> int:
    names = [band(h) for h in BANDS] + [band(BANDS[-1] + 1)]
    return names.index(name) if name in names else -1


def _rows(path: Path, suite: str, method: str, kind: str) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, file_lines(path.read_text(encoding="utf-8")))
            if r["suite"] == suite and r["method"] == method and r["kind"] == kind]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="an `svgt eval --out` folder")
    parser.add_argument("artifact", help="the artifact the run's method used (svgt train --out)")
    parser.add_argument("--suite", default=None,
                        help="the suite to read (default: jailbreak; overrefusal with --benign)")
    parser.add_argument("--method", default="svgt", help="the method to read (default: svgt)")
    parser.add_argument("--benign", action="store_true", help="diagnose the refused benign prompts instead")
    args = parser.parse_args(argv)
    suite = args.suite or ("overrefusal" if args.benign else "jailbreak")
    kind = "benign" if args.benign else "harmful"
    path = args.run / "responses.jsonl"
    if not path.exists():
        parser.error(f"{path} does not exist (expected an `svgt eval --out` folder)")
    try:
        config = read_config(args.artifact)
    except ArtifactError as exc:
        parser.error(f"{exc} (expected an `svgt train --out` folder)")
    rows = _rows(path, suite, args.method, kind)
    if not rows:
        parser.error(f"{path}: no {kind} {suite!r} answers of method {args.method!r}")
    backbone = load_backbone(config["backbone"]["name"])
    module = load_pretrained(args.artifact, backbone).eval()
    gate = module.config.gate_threshold
    if args.benign:
        return _benign(args.run, rows, backbone, module, gate)
    answered = [r for r in rows if not is_refusal(r["text"])]
    scores = first_bridge_scores(backbone, module, [r["prompt"] for r in answered])
    gated = [r for r, s in zip(answered, scores) if gate is not None and s <= gate]
    bridged = [r for r, s in zip(answered, scores) if gate is None or s > gate]
    print(f"{suite}: {len(rows)} harmful prompts, {len(answered)} answered (phrase-list judge); gate {gate}: "
          f"{len(gated)} gated, {len(bridged)} bridged and answered anyway")
    for name, part in (("gated", gated), ("bridged", bridged)):
        print(f"  {name} by template: {dict(collections.Counter(r['template'] for r in part).most_common())}")
    return 0


def _benign(run: Path, rows: list[dict[str, Any]], backbone: Any, module: Any, gate: float | None) -> int:
    settings = run / "run.json"
    tokens = json.loads(settings.read_text())["max_new_tokens"] if settings.exists() else 40
    scores = first_bridge_scores(backbone, module, [r["prompt"] for r in rows])
    refused = list(dict.fromkeys(r["prompt"] for r in rows if is_refusal(r["text"])))
    plain = generate(backbone, None, refused, GenerationConfig(max_new_tokens=tokens, guidance=False)).texts
    own = {p: is_refusal(t) for p, t in zip(refused, plain)}
    print(f"gate {gate}; the backbone's own answers: greedy, {tokens} new tokens")
    for source, t in benign_tally(rows, scores, own, gate).items():
        bands = ", ".join(f"{name}: {n_ref} of {n}" for name, (n, n_ref) in t["bridged_by_band"].items())
        print(f"{source}: {t['refused']} of {t['n']} refused; the backbone's own {t['own']}, added while gated "
              f"{t['added_gated']}, added by a bridge {t['added_bridged']}")
        print(f"  bridged prompts refused, by score above the gate: {bands or 'none bridged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
