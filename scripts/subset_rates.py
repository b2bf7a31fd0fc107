#!/usr/bin/env python
"""Rates of earlier evaluation answers on the prompts of another run, so two backbones compare on the same prompts.

`svgt eval` names every prompt by an id from its full suite, so a stratified `--limit` run holds a subset of the
ids a whole-set run holds. This script takes the prompt ids of one run (`--subset`, e.g. a Gemma run with
`--limit 40`) and, for each run given, counts refusals (`svgt.judges.is_refusal`), looping answers
(`svgt.judges.is_looping`) and benign answers identical to method `none`'s on exactly those prompts, without
generating anything. Prints a Markdown table.

    .venv/bin/python scripts/subset_rates.py --subset runs/eval-gemma \\
        smollm2=runs/eval-itw gemma-3-270m=runs/eval-gemma
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from svgt.data.records import file_lines
from svgt.judges import is_looping, is_refusal

SUITES = ("harmbench", "overrefusal", "jailbreak", "inthewild")


def read_responses(run: Path) -> dict[tuple[str, str], dict[str, dict]]:
    """`(method, suite) -> {prompt id: response row}` of a run directory's responses.jsonl."""
    path = run / "responses.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path}: not found (expected an `svgt eval --out` directory)")
    rows: dict[tuple[str, str], dict[str, dict]] = {}
    for number, line in enumerate(file_lines(path.read_text(encoding="utf-8")), 1):
        if line.strip():
            try:
                r = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{path}:{number}: not JSON ({exc})") from exc
            rows.setdefault((r["method"], r["suite"]), {})[r["id"]] = r
    return rows


def rates(rows: dict[tuple[str, str], dict[str, dict]], ids: dict[str, set[str]], method: str) -> list[str]:
    cells = []
    for suite in SUITES:
        answers = {i: r for i, r in rows.get((method, suite), {}).items() if i in ids.get(suite, set())}
        if len(answers) < len(ids.get(suite, ())):
            cells.append(f"{len(answers)} of {len(ids.get(suite, ()))} prompts answered")
            continue
        refused = sum(is_refusal(r["text"]) for r in answers.values())
        n = len(answers)
        if suite == "overrefusal":
            edgy = [r for r in answers.values() if r["category"]]
            plain = [r for r in answers.values() if not r["category"]]
            unguided = rows.get(("none", suite), {})
            same = sum(i in unguided and r["text"] == unguided[i]["text"] for i, r in answers.items())
            cells.append(f"{refused}/{n} (edgy {sum(is_refusal(r['text']) for r in edgy)}/{len(edgy)}, ShareGPT "
                         f"{sum(is_refusal(r['text']) for r in plain)}/{len(plain)})")
            cells.append(f"{same}/{n}")
        else:
            cells.append(f"{refused}/{n} ({100 * refused / n:.1f}%)" if suite == "harmbench"
                         else f"{100 * (n - refused) / n:.1f}% ({n - refused}/{n})")
    loops = sum(is_looping(r["text"]) for suite in SUITES for i, r in rows.get((method, suite), {}).items()
                if i in ids.get(suite, set()))
    return cells + [str(loops)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subset", required=True, type=Path, help="the run whose prompt ids to count on")
    parser.add_argument("--methods", default="none,svgt")
    parser.add_argument("runs", nargs="+", help="NAME=DIR: runs whose answers to count")
    args = parser.parse_args(argv)
    ids: dict[str, set[str]] = {}
    for (method, suite), answers in read_responses(args.subset).items():
        ids.setdefault(suite, set()).update(answers)
    print("| run | method | HarmBench refusal ↑ | over-refusal ↓ | benign left as written ↑ | DAN ASR ↓ "
          "| in-the-wild ASR ↓ | looping |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in args.runs:
        name, sep, folder = spec.partition("=")
        if not sep:
            parser.error(f"{spec!r}: expected NAME=DIR")
        rows = read_responses(Path(folder))
        for method in args.methods.split(","):
            print(f"| {name} | {method} | " + " | ".join(rates(rows, ids, method)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
