#!/usr/bin/env python
"""What scoring each paragraph of a long prompt costs and buys: `GenerationConfig.score_paragraphs` on and off.

Before the first bridge, svgt scores every paragraph of a prompt as a prompt of its own (one forward up to the extract
layer per paragraph) and builds the bridge from whichever of the whole prompt and its paragraphs scores most unsafe,
so a request buried in a jailbreak template is judged on its own. This times the backbone alone and the shipped
module with and without that, greedy, on the first N prompts of the DAN jailbreak suite (evaluation prompts: a
measurement, nothing is tuned on it), and counts refusals with the phrase judge.

    .venv/bin/python scripts/paragraph_cost.py --backbone gemma-3-270m -n 24
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

from svgt.artifact import load_pretrained
from svgt.backbone import DEFAULT_BACKBONE, load_backbone
from svgt.config import GenerationConfig
from svgt.evaluation.suites import load_suite
from svgt.generation import generate
from svgt.judges import is_refusal
from svgt.pipeline import packaged_artifact


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("-n", type=int, default=24, help="prompts of the DAN suite (its first N)")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    backbone = load_backbone(args.backbone)
    artifact = packaged_artifact(backbone.name)
    if artifact is None:
        parser.error(f"no module is shipped for {backbone.name!r} (src/svgt/artifacts/)")
    module = load_pretrained(artifact, backbone).eval()
    prompts = [p.prompt for p in load_suite("jailbreak", args.n, heldout_benign=[]).prompts]
    base = GenerationConfig(max_new_tokens=args.max_new_tokens, telemetry=False)
    generate(backbone, None, prompts[: args.batch_size], base, batch_size=args.batch_size)  # warm-up, not timed
    print("| | seconds | new tokens | refused |\n|---|---|---|---|")
    for label, cfg, mod in (("backbone alone", base, None), ("svgt, paragraphs scored (default)", base, module),
                            ("svgt, whole prompt only", replace(base, score_paragraphs=False), module)):
        start = time.perf_counter()
        out = generate(backbone, mod, prompts, cfg, batch_size=args.batch_size)
        seconds = time.perf_counter() - start
        print(f"| {label} | {seconds:.1f} | {sum(len(t) for t in out.token_ids)} | "
              f"{sum(map(is_refusal, out.texts))}/{len(prompts)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
