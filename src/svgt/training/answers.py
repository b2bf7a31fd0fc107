"""The unguided backbone's greedy answers to training prompts, cached on disk per prompt.

`svgt train` lets the backbone answer some training prompts (its complying answers to harmful prompts become stage-2
unsafe pairs, its answers to benign ones stage-3 targets). The cache is a folder per backbone, prompt format (chat
template, stop strings), answer length and torch and transformers versions, of JSON shards mapping a prompt's hash
to the prompt and its answer: a call generates only the answers no shard holds, so a changed sample of prompts costs
its new prompts alone. Several processes (`svgt.training.distributed`) each answer every `world_size()`-th batch of
those; the main process writes the shard.

A greedy answer is what the backbone generates for the prompt in a length-sorted, left-padded batch; other
neighbours pad it differently, which in rare cases flips a near-tie token. A cache filled in several calls can so
hold an answer that a single call would have written otherwise; both are the backbone's greedy answer to the
precision of its floats.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tqdm.auto import tqdm

from ..backbone import Backbone, cache_dir, numerics_versions
from ..cache import describe_store
from ..config import GenerationConfig
from ..generation import generate
from . import distributed

BATCH = 16


def _format(backbone: Backbone) -> list:
    # The prompt format is part of the key: the prompts are raw texts, and the same texts in another format (chat
    # template, stop strings) get other answers (the states cache keys on token ids, which carry the format).
    return [getattr(backbone.tokenizer, "chat_template", None), list(backbone.stop_strings)]


def _key_fields(backbone: Backbone, max_new_tokens: int) -> list:
    return [backbone.name, backbone.revision, max_new_tokens, _format(backbone), numerics_versions()]


def _store(backbone: Backbone, max_new_tokens: int) -> Path:
    key = _key_fields(backbone, max_new_tokens)
    return cache_dir() / "answers" / hashlib.sha256(json.dumps(key).encode()).hexdigest()[:20]


def _store_info(backbone: Backbone, max_new_tokens: int) -> dict:
    """What `svgt cache` shows of the folder (the prompt format is in the key but too long to show)."""
    name, revision, tokens, _, versions = _key_fields(backbone, max_new_tokens)
    return {"backbone": name, "revision": revision, "new tokens": tokens, "versions": versions}


def _key(prompt: str) -> str:
    return hashlib.sha256(prompt.encode()).hexdigest()[:24]


def _known(store: Path) -> dict[str, str]:
    """Every cached answer in the store, by prompt key (shards read in name order; the first holds a key)."""
    known: dict[str, str] = {}
    for path in sorted(store.glob("*.json")):
        for key, item in json.loads(path.read_text()).items():
            known.setdefault(key, item["answer"])
    return known


def _write(store: Path, answers: dict[str, tuple[str, str]]) -> None:
    """One shard of `{key: (prompt, answer)}`, written whole, then renamed: a reader never sees half a file."""
    name = hashlib.sha256("\n".join(sorted(answers)).encode()).hexdigest()[:20]
    tmp = store / f"{name}.json.tmp"
    tmp.write_text(json.dumps({k: {"prompt": p, "answer": a} for k, (p, a) in answers.items()}))
    tmp.replace(store / f"{name}.json")


def backbone_answers(backbone: Backbone, prompts: list[str], max_new_tokens: int, desc: str) -> list[str]:
    """The unguided backbone's greedy answers to `prompts`, each generated once and cached (module docstring)."""
    store = _store(backbone, max_new_tokens)
    keys = [_key(p) for p in prompts]
    if distributed.is_main():
        store.mkdir(parents=True, exist_ok=True)
        describe_store(store, _store_info(backbone, max_new_tokens))
    distributed.barrier()
    known = _known(store)
    missing = distributed.missing(keys, known)
    if missing:
        cfg = GenerationConfig(max_new_tokens=max_new_tokens, guidance=False)
        # Length-sorted batches: left padding to the longest prompt of a batch is pure waste on a CPU.
        order = sorted(missing, key=lambda i: len(prompts[i]))
        starts = range(0, len(order), BATCH)
        mine: dict[str, tuple[str, str]] = {}
        for j in tqdm(distributed.my_batches(len(starts)), desc=desc, unit="batch", leave=False,
                      disable=not distributed.is_main()):
            idx = order[starts[j] : starts[j] + BATCH]
            for i, text in zip(idx, generate(backbone, None, [prompts[i] for i in idx], cfg, batch_size=BATCH).texts):
                mine[keys[i]] = (prompts[i], text)
        new = distributed.gather_dicts(mine)
        if distributed.is_main():
            _write(store, new)
        distributed.barrier()
        known.update({k: a for k, (_, a) in new.items()})
    return [known[k] for k in keys]
