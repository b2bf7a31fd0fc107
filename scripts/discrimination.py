#!/usr/bin/env python
"""The discriminator of a trained artifact, alone: prompt-level AUROC of its first-bridge score on the tuning set.

`svgt train` records this at the end of its tuning check (`tuning.discrimination` in metrics.json), after the
margin and gate search, which generates every tuning answer several times (about half an hour on a 2-core CPU).
This script computes only the scores (a forward per prompt up to the extract layer, shared by every artifact
that reads the same layer of the same backbone), so modules, e.g. trained with different recipes and stopped after
stage 2, can be compared in minutes. HarmBench val against each benign tuning column, and the held-out constructed
contrast aims (harmful twin against benign twin), by category. Tuning data only: no evaluation prompt is scored.
The ShareGPT column is all 187 held-out tuning prompts (the first 60 before 2026-12-05, which the docs' older tables
read).

    .venv/bin/python scripts/discrimination.py runs/v9 runs/x27
    .venv/bin/python scripts/discrimination.py --mean runs/dexp/s2t200 runs/dexp/s2t0 runs/dexp/ep16
    .venv/bin/python scripts/discrimination.py --answers 32 src/svgt/artifacts/smollm2-135m-instruct

`--recipes N` reads the artifacts as consecutive groups of N runs of one recipe (`--set init_seed=...`, the same
data) and adds each group's mean and range: one run against one other is within the spread between runs.

    .venv/bin/python scripts/discrimination.py --recipes 3 runs/dexp/more runs/dexp/main-i1 runs/dexp/main-i2 \
        runs/dexp/third runs/dexp/third-i1 runs/dexp/third-i2

`--last-sentence` scores each prompt's last sentence on its own too (`GenerationConfig.score_last_sentence`);
`--wrapped` adds HarmBench val inside the held-out jailbreak-style wrappers (the tuning check's wrapped column) and
each column's share of prompts the module's gate would bridge:

    .venv/bin/python scripts/discrimination.py --wrapped src/svgt/artifacts/smollm2-135m-instruct
    .venv/bin/python scripts/discrimination.py --wrapped --last-sentence src/svgt/artifacts/smollm2-135m-instruct

`--answers N` also reads the backbone's own greedy answers (N new tokens, unguided; `svgt train`'s answer cache) to
the same prompts with the module's conditional per-token score, averaged over the answer (stage 2's pair score):
whether reading what the backbone says separates the columns better than reading what was asked.

Each artifact is scored on the backbone it was trained for, so `--mean` can also average the judgments of modules
for different backbones (a diagnostic: a shipped module reads only its own backbone's states):

    .venv/bin/python scripts/discrimination.py --mean src/svgt/artifacts/gemma-3-270m \
        src/svgt/artifacts/smollm2-135m-instruct

A second table gives each row's operating point: the gate that lets at most 10% of the edgy column through (read
off that column, so in-sample) and each column's share above it.

`--contrast-batches 3` scores the held-out aims of a batch of contrast pairs that training reads only on request too
(`TrainConfig.contrast_batches`), in the contrast-pair AUROC and in the twins column, so that modules trained with and
without it are compared on the same aims.

`--unconditional` scores with the conditional path off (no cross-attention over the prompt's states: the last
token's state alone), to see how much of the judgment that path carries.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from svgt.artifact import ArtifactError, load_pretrained, read_config
from svgt.backbone import Backbone, load_backbone
from svgt.config import TrainConfig
from svgt.data.contrast import DEFAULT_BATCHES, contrast_prompts
from svgt.data.wrappers import wrapped_tuning_prompts
from svgt.module import ValueModule
from svgt.training.activations import compute_states, encode_pair
from svgt.training.stages import StateData, pair_scores
from svgt.training.answers import backbone_answers
from svgt.training.trainer import auroc_vs_benign, discrimination_report, first_bridge_scores_of, tuning_sets_for


def answer_scores(backbone: Backbone, module: ValueModule, prompts: list[str], answers: list[str],
                  cfg: TrainConfig) -> list[float]:
    """Per (prompt, answer), the module's conditional score averaged over the answer's tokens, as stage 2 scores a
    pair (an empty answer is read as one space)."""
    pairs = [encode_pair(backbone, p, a or " ", cfg.max_prompt_tokens, cfg.max_response_tokens)
             for p, a in zip(prompts, answers)]
    states = compute_states(backbone, module.config.extract_layer, pairs, desc="answer states")
    return pair_scores(module, StateData(states, torch.zeros(len(pairs))), conditional=True).tolist()


def backbone_names(configs: list[dict], override: str | None) -> list[str]:
    """Per artifact (its `svgt_config.json`), the backbone it is scored on: `override`, else the one it names."""
    return [override or c["backbone"]["name"] for c in configs]


EDGY_SHARE = 0.1
"""The operating point reported beside the AUROCs: a gate that lets at most this share of the edgy column through."""


def shares_above(columns: dict[str, list[float]], threshold: float) -> dict[str, float]:
    """Per non-empty column, the share of its scores above `threshold` (what a gate there would bridge)."""
    return {name: round(sum(x > threshold for x in v) / len(v), 4) for name, v in columns.items() if v}


def gate_at(scores: dict[str, list[float]], column: str, share: float) -> dict[str, float]:
    """The lowest gate threshold (a score, bridged when above it) that puts at most `share` of `column`'s prompts
    above it, and each column's share above it there: what a score alone could do at that over-refusal, before
    the bridge. In-sample: the threshold is read off the very column it is judged on."""
    ranked = sorted(scores[column], reverse=True)
    allowed = int(share * len(ranked))
    threshold = ranked[allowed] if allowed < len(ranked) else float("-inf")
    return {"threshold": round(threshold, 4), **shares_above(scores, threshold)}


def recipe_groups(names: list[str], runs: int) -> list[list[str]]:
    """`names` in consecutive groups of `runs` runs of one recipe (say, init seeds 0, 1, 2 of each)."""
    if runs < 1 or len(names) % runs:
        raise ValueError(f"{len(names)} artifacts do not split into groups of {runs}")
    return [names[start : start + runs] for start in range(0, len(names), runs)]


def recipe_rows(reports: dict[str, dict], names: list[str], runs: int,
                ) -> list[tuple[str, dict[str, tuple[float, float, float]]]]:
    """The reports of the artifacts `names` (in order; not `--mean`'s or `--answers`' extra rows) in `recipe_groups`:
    per group, named by its first run, each column's (mean, lowest, highest) AUROC, the held-out contrast aims
    included as `contrast, all`."""
    rows = []
    for names_in_group in recipe_groups(names, runs):
        group = [reports[a] for a in names_in_group]
        values = {c: [r["harmbench_val_vs"][c] for r in group] for c in group[0]["harmbench_val_vs"]}
        values["contrast, all"] = [r["heldout_contrast"]["all"] for r in group]
        rows.append((names_in_group[0], {c: (sum(v) / len(v), min(v), max(v)) for c, v in values.items()}))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifacts", nargs="+", help="artifact folders (svgt train --out)")
    parser.add_argument("--backbone", default=None, help="score every artifact on this one (default: each its own)")
    parser.add_argument("--json", default=None, help="also write every report here")
    parser.add_argument("--mean", action="store_true",
                        help="also report the mean of the artifacts' scores, each standardised by the mean and spread "
                             "of its own tuning-prompt scores (what averaging several discriminators would give)")
    parser.add_argument("--recipes", type=int, default=0, metavar="RUNS",
                        help="the artifacts are consecutive groups of RUNS runs of one recipe (e.g. init seeds): "
                             "also print each group's mean and range per column")
    parser.add_argument("--answers", type=int, default=0, metavar="TOKENS",
                        help="also score the backbone's own greedy answers of TOKENS new tokens (see above)")
    parser.add_argument("--last-sentence", action="store_true",
                        help="also score each prompt's last sentence on its own (GenerationConfig.score_last_sentence)")
    parser.add_argument("--wrapped", action="store_true",
                        help="add HarmBench val in the held-out jailbreak-style wrappers, and each column's share "
                             "above the module's gate")
    parser.add_argument("--contrast-batches", type=int, default=None, metavar="N",
                        help="score the held-out aims of the first N batches of contrast pairs (default: the ones "
                             "training reads by default, svgt.data.contrast.DEFAULT_BATCHES)")
    parser.add_argument("--unconditional", action="store_true",
                        help="score without the conditional path (the cross-attention over the prompt's states)")
    args = parser.parse_args(argv)
    settings = {"score_last_sentence": True} if args.last_sentence else {}
    if args.recipes:  # before any scoring, which takes minutes
        try:
            recipe_groups(args.artifacts, args.recipes)
        except ValueError as exc:
            parser.error(f"--recipes {args.recipes}: {exc}")
    try:  # every folder checked before any is scored: the same check load_pretrained makes
        configs = [read_config(a) for a in args.artifacts]
    except ArtifactError as exc:
        parser.error(f"{exc} (expected an `svgt train --out` folder)")
    names = backbone_names(configs, args.backbone)
    mixed = len(set(names)) > 1
    if args.answers and mixed:
        parser.error(f"--answers reads one backbone's answers; these artifacts name {sorted(set(names))}")
    cfg = TrainConfig(contrast_batches=args.contrast_batches or DEFAULT_BATCHES)  # the twins column follows it too
    sets = tuning_sets_for(cfg)
    heldout = contrast_prompts(seed=cfg.seed, batches=cfg.contrast_batches).heldout
    columns = {**sets, "contrast": [p.text for p in heldout]}
    if args.wrapped:
        columns["wrapped"] = wrapped_tuning_prompts(sets["harmbench_val"], cfg.seed)
    scored: list[dict[str, list[float]]] = [{} for _ in args.artifacts]  # per artifact, each column's scores
    read: list[dict[str, list[float]]] = [{} for _ in args.artifacts]  # with --answers: the answers' scores
    modules: list[ValueModule | None] = [None] * len(args.artifacts)
    for backbone_name in dict.fromkeys(names):  # one backbone in memory at a time; its modules scored together
        backbone = None  # the last one freed before the next loads
        backbone = load_backbone(backbone_name)
        mine = [i for i, n in enumerate(names) if n == backbone_name]
        for i in mine:
            modules[i] = load_pretrained(args.artifacts[i], backbone).eval()
            if args.unconditional:
                modules[i].config.conditional_weight = 0.0
        # Modules reading the same layer share each batch's forward: the prompts are prefilled once, not per module.
        for name, prompts in columns.items():
            judged = first_bridge_scores_of(backbone, [modules[i] for i in mine], prompts, f"scores, {name}",
                                            **settings)
            for i, scores in zip(mine, judged):
                scored[i][name] = scores
        if args.answers:  # once for every artifact: the unguided backbone's answers do not depend on the module
            answers = {name: backbone_answers(backbone, prompts, args.answers, f"answers ({name})")
                       for name, prompts in columns.items() if name != "wrapped"}
            for i in mine:
                read[i] = {name: answer_scores(backbone, modules[i], columns[name], texts, cfg)
                           for name, texts in answers.items()}
    reports, standardised = {}, []
    for a, backbone_name, module, columns_scored, answers_read in zip(args.artifacts, names, modules, scored, read):
        scores = {name: v for name, v in columns_scored.items() if name in sets}
        contrast, wrapped = columns_scored["contrast"], columns_scored.get("wrapped")
        layers = f"extract {module.config.extract_layer}, insert {module.config.insert_layer}"
        if mixed:
            layers = f"{backbone_name}: {layers}"
        if args.unconditional:
            layers += ", unconditional"
        reports[a] = {"layers": layers, **discrimination_report(scores, heldout, contrast),
                      "gate_at_edgy": gate_at(scores, "heldout_edgy", EDGY_SHARE)}
        if wrapped is not None:
            gate = module.config.gate_threshold
            reports[a]["wrapped_vs"] = auroc_vs_benign(wrapped, scores)
            reports[a]["above_gate"] = {"gate": gate, **shares_above(
                {**scores, "wrapped": wrapped}, gate if gate is not None else float("-inf"))}
        print(f"{a} ({layers}): {json.dumps(reports[a])}", file=sys.stderr)
        if answers_read:
            reports[f"{a}, answers"] = {"layers": f"{layers}; {args.answers}-token unguided answers",
                                        **discrimination_report({n: answers_read[n] for n in sets}, heldout,
                                                                answers_read["contrast"])}
        own = torch.tensor([x for column in scores.values() for x in column])
        standardised.append({name: (torch.tensor(v) - own.mean()) / own.std()
                             for name, v in {**scores, "contrast": contrast}.items()})
    if args.mean:
        mean = {name: (sum(s[name] for s in standardised) / len(standardised)).tolist() for name in standardised[0]}
        contrast = mean.pop("contrast")
        reports["mean"] = {"layers": "-", **discrimination_report(mean, heldout, contrast),
                           "gate_at_edgy": gate_at(mean, "heldout_edgy", EDGY_SHARE)}
    columns = list(next(iter(reports.values()))["harmbench_val_vs"])
    categories = list(next(iter(reports.values()))["heldout_contrast"]["by_category"])
    print("| artifact | layers | " + " | ".join(f"HB val vs {c}" for c in columns) + " | contrast, all |")
    print("|---|---|" + "---|" * (len(columns) + 1))
    for a, r in reports.items():
        cells = [f"{r['harmbench_val_vs'][c]:.3f}" for c in columns] + [f"{r['heldout_contrast']['all']:.3f}"]
        print(f"| {a} | {r['layers']} | " + " | ".join(cells) + " |")
    if args.recipes:
        print("\n| recipe (first run) | " + " | ".join(f"HB val vs {c}: mean [range]" for c in columns)
              + " | contrast, all: mean [range] |")
        print("|---|" + "---|" * (len(columns) + 1))
        for first, row in recipe_rows(reports, args.artifacts, args.recipes):
            print(f"| {first} | " + " | ".join(f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in row.values()) + " |")
    gated = {a: r["gate_at_edgy"] for a, r in reports.items() if "gate_at_edgy" in r}
    shown = [c for c in next(iter(gated.values())) if c != "threshold"]
    print(f"\n| artifact (gate letting {EDGY_SHARE:.0%} of heldout_edgy through; in-sample) | "
          + " | ".join(f"{c} above" for c in shown) + " |")
    print("|---|" + "---|" * len(shown))
    for a, g in gated.items():
        print(f"| {a} (at {g['threshold']:.2f}) | " + " | ".join(f"{g[c]:.1%}" for c in shown) + " |")
    wrapped_rows = {a: r for a, r in reports.items() if "wrapped_vs" in r}
    if wrapped_rows:
        shares = [c for c in next(iter(wrapped_rows.values()))["above_gate"] if c != "gate"]
        print("\n| artifact | " + " | ".join(f"wrapped vs {c}" for c in columns)
              + " | " + " | ".join(f"{c} above gate" for c in shares) + " |")
        print("|---|" + "---|" * (len(columns) + len(shares)))
        for a, r in wrapped_rows.items():
            cells = [f"{r['wrapped_vs'][c]:.3f}" for c in columns] + [f"{r['above_gate'][c]:.1%}" for c in shares]
            print(f"| {a} (gate {r['above_gate']['gate']}) | " + " | ".join(cells) + " |")
    print("\n| contrast category | " + " | ".join(reports) + " |")
    print("|---|" + "---|" * len(reports))
    for c in categories:
        print(f"| {c} | " + " | ".join(f"{r['heldout_contrast']['by_category'][c]['auroc']:.3f}"
                                       for r in reports.values()) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
