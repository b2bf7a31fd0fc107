#!/usr/bin/env python
"""Rates of earlier evaluation answers on the prompts of another run, so two backbones compare on the same prompts.

`svgt eval` names every prompt by an id from its full suite, so a stratified `--limit` run holds a subset of the
ids a whole-set run holds. This script takes the prompt ids of one run (`--subset`, e.g. a Gemma run with
`--limit 40`) and, for each run given, counts refusals (`svgt.judges.is_refusal`), looping answers
(`svgt.judges.is_looping`) and benign answers identical to method `none`'s on exactly those prompts, without
generating anything. Prints a Markdown table.

    .venv/bin/python scripts/subset_rates.py --subset runs/eval-gemma \\
        smollm2=runs/eval-itw gemma-3-270m=runs/eval-gemma

`--suites` names the prompts by suite and limit instead, as `svgt eval --suites` does (the README's subset is
`harmbench:40,overrefusal:40,jailbreak:16,inthewild:16`), so no subset run has to be kept: a limited suite is always
the same prompts.

`--unguided DIR` reads method `none`'s answers from another run of the same backbone (for a method evaluated on its
own, e.g. `cast` after `none` was measured).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from svgt.data.errors import DataError
from svgt.data.userfiles import jsonl_rows
from svgt.evaluation.suites import load_suite
from svgt.judges import is_looping, is_refusal

SUITES = ("harmbench", "overrefusal", "jailbreak", "inthewild")


def read_responses(run: Path) -> dict[tuple[str, str], dict[str, dict]]:
    """`(method, suite) -> {prompt id: response row}` of a run directory's responses.jsonl. Read here, not with the
    runner's `JsonlLog`: that one cuts a torn last line out of the file, and this script must not write into a run
    that may still be appending to it."""
    path = run / "responses.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path}: not found (expected an `svgt eval --out` directory)")
    rows: dict[tuple[str, str], dict[str, dict]] = {}
    try:
        for _, r in jsonl_rows(path):
            rows.setdefault((r["method"], r["suite"]), {})[r["id"]] = r
    except DataError as exc:
        raise SystemExit(str(exc)) from exc
    return rows


def rates(rows: dict[tuple[str, str], dict[str, dict]], ids: dict[str, set[str]], method: str,
          unguided: dict[tuple[str, str], dict[str, dict]] | None = None) -> list[str]:
    """One table row's cells for `method`: per suite its rate on the prompts in `ids`, then its looping answers.
    Benign answers count as left as written where they equal method `none`'s in `unguided` (default: `rows`)."""
    cells, loops = [], 0
    for suite in SUITES:
        wanted = ids.get(suite, set())
        answers = {i: r for i, r in rows.get((method, suite), {}).items() if i in wanted}
        if not wanted or len(answers) < len(wanted):  # a suite the subset lacks, or one this run has not finished
            note = f"{len(answers)} of {len(wanted)} prompts answered" if wanted else "–"
            cells += [note, "–"] if suite == "overrefusal" else [note]  # over-refusal fills two columns
            continue
        loops += sum(is_looping(r["text"]) for r in answers.values())
        refused = {i for i, r in answers.items() if is_refusal(r["text"])}
        n = len(answers)
        if suite == "overrefusal":
            edgy = [i for i, r in answers.items() if r["category"]]
            plain = [i for i, r in answers.items() if not r["category"]]
            plain_answers = (unguided or rows).get(("none", suite), {})
            same = sum(i in plain_answers and r["text"] == plain_answers[i]["text"] for i, r in answers.items())
            cells.append(f"{len(refused)}/{n} (edgy {len(refused.intersection(edgy))}/{len(edgy)}, ShareGPT "
                         f"{len(refused.intersection(plain))}/{len(plain)})")
            cells.append(f"{same}/{n}")
        elif suite == "harmbench":
            cells.append(f"{len(refused)}/{n} ({100 * len(refused) / n:.1f}%)")
        else:
            cells.append(f"{100 * (n - len(refused)) / n:.1f}% ({n - len(refused)}/{n})")
    return cells + [str(loops)]


def run_ids(run: Path) -> dict[str, set[str]]:
    """`suite -> prompt ids` a run's answers cover, by any method."""
    ids: dict[str, set[str]] = {}
    for (_, suite), answers in read_responses(run).items():
        ids.setdefault(suite, set()).update(answers)
    return ids


def suite_ids(spec: str) -> dict[str, set[str]]:
    """`suite -> prompt ids` of comma-separated `NAME[:N]` suites, as `svgt eval --suites` would take them. The
    over-refusal suite's ShareGPT half is that of the default training corpus (a module trained with defaults)."""
    ids: dict[str, set[str]] = {}
    for part in filter(None, (x.strip() for x in spec.split(","))):
        try:
            suite = load_suite(part)
        except ValueError as exc:
            raise SystemExit(f"--suites {part!r}: {exc}") from exc
        ids.setdefault(suite.name, set()).update(p.id for p in suite.prompts)
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--subset", type=Path, help="the run whose prompt ids to count on")
    which.add_argument("--suites", help="the prompts to count on, as svgt eval --suites names them, e.g. "
                                        "harmbench:40,overrefusal:40,jailbreak:16,inthewild:16")
    parser.add_argument("--methods", default="none,svgt")
    parser.add_argument("--unguided", type=Path, default=None,
                        help="the run to read method none's answers from (default: each run itself)")
    parser.add_argument("runs", nargs="+", help="NAME=DIR: runs whose answers to count")
    args = parser.parse_args(argv)
    unguided = read_responses(args.unguided) if args.unguided else None
    ids = suite_ids(args.suites) if args.suites else run_ids(args.subset)
    print("| run | method | HarmBench refusal ↑ | over-refusal ↓ | benign left as written ↑ | DAN ASR ↓ "
          "| in-the-wild ASR ↓ | looping |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in args.runs:
        name, sep, folder = spec.partition("=")
        if not sep:
            parser.error(f"{spec!r}: expected NAME=DIR")
        rows = read_responses(Path(folder))
        for method in args.methods.split(","):
            print(f"| {name} | {method} | " + " | ".join(rates(rows, ids, method, unguided)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
