"""The three record shapes every data source is turned into, and a stable fingerprint over a list of them.

Records are frozen so they can be deduplicated with sets and shared between cached loaders without copying.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable


@dataclass(frozen=True)
class TextExample:
    """A standalone text (a prompt or a statement). label 1 = unsafe/harmful, 0 = safe."""

    text: str
    label: int
    source: str


@dataclass(frozen=True)
class PairExample:
    """A prompt and a response; label judges the RESPONSE given the prompt (1 = unsafe, e.g. it complies with harm)."""

    prompt: str
    response: str
    label: int
    source: str


@dataclass(frozen=True)
class PromptExample:
    """A request to send to a model (evaluation, refusal targets). context: extra text the request refers to."""

    prompt: str
    label: int
    source: str
    category: str | None = None
    context: str | None = None


def _canonical(item: Any) -> str:
    # The class name is part of the identity: a TextExample and a PromptExample with the same text are different data.
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        item = {"__type__": type(item).__name__, **dataclasses.asdict(item)}
    return json.dumps(item, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def fingerprint(items: Iterable[Any]) -> str:
    """First 16 hex chars of sha256 over the sorted canonical JSON of the records.

    Sorted, so the fingerprint names the *set* of records (a reshuffle does not change it); canonical JSON with sorted
    keys, so it is identical across runs, processes and Python versions (no reliance on `hash()`).
    """
    digest = hashlib.sha256()
    for line in sorted(_canonical(item) for item in items):
        digest.update(line.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def file_lines(text: str, keepends: bool = False) -> list[str]:
    """The lines of a text file's contents, split at "\n" only (a "\r\n" ending keeps its "\r" unless stripped).

    `str.splitlines` also splits at characters such as U+2028, U+0085 and U+001C, which a JSON string written with
    `ensure_ascii=False` carries unescaped (real jailbreak prompts contain them): a JSONL row would come apart."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]] if keepends else parts[:-1]
    return lines + [parts[-1]] if parts[-1] else lines

