"""What svgt keeps in its cache folder (`svgt.backbone.cache_dir`), and which of it no longer serves.

The states and answers caches are keyed by the torch and transformers versions that computed them
(`svgt.backbone.numerics_versions`), so an upgrade of either starts new folders and leaves the old ones on disk: a
few GB after a training run. Each such folder records its key in a `store.key` file when svgt creates or uses it;
`entries` reads those back, and `prune` deletes what this installation cannot read: folders written under other
versions, and the whole-data-set files of the caches from before they were kept per item. Everything else (converted
backbones, GGUF files, wheels, DPO adapters, folders written before `store.key` existed) is listed and kept.

    svgt cache            # list
    svgt cache --prune    # delete what no svgt here reads
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backbone import cache_dir, numerics_versions

KEY_FILE = "store.key"
"""The file in a states or answers cache folder that says what the folder holds (JSON; not `*.json`, which the
answers cache reads as answers)."""

KEYED = ("activations", "answers")
"""Cache kinds whose folders are keyed by library versions."""

KINDS = {"backbones": "a backbone converted to fp32 once (svgt.backbone)",
         "gguf": "a GGUF file assembled from its package's parts (svgt.backbone)",
         "wheels": "a data package's wheel (svgt.data.locate)",
         "dpo": "a DPO baseline's LoRA tensors (svgt.methods.dpo)"}
"""What the entries of the other cache folders are."""


def describe_store(store: Path, info: dict[str, Any]) -> None:
    """Record what a cache folder holds (`info`, with the versions under "versions"), once: an existing record is
    left alone. Written whole and renamed, so a reader never sees half of it."""
    path = store / KEY_FILE
    if path.exists():
        return
    tmp = store / f"{KEY_FILE}.tmp"
    tmp.write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


@dataclass
class CacheEntry:
    path: Path
    kind: str
    """The top-level folder it is in: activations, answers, backbones, gguf, wheels, dpo, ..."""
    size: int
    """Bytes, everything under it."""
    what: str
    """What it holds, as far as can be told."""
    stale: bool
    """Whether no svgt here reads it (what `prune` deletes)."""
    why: str = ""
    """Why it is stale."""


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _describe(info: dict[str, Any]) -> str:
    versions = info.get("versions", {})
    parts = [f"{k} {v}" for k, v in info.items() if k != "versions" and v is not None]
    parts += [f"{k} {v}" for k, v in sorted(versions.items())]
    return ", ".join(parts)


def _keyed(path: Path, kind: str, current: dict[str, str]) -> CacheEntry:
    size = _size(path)
    if path.is_file():
        return CacheEntry(path, kind, size, "a whole-data-set file", True,
                          "from before the cache was kept per item; no svgt reads it")
    key = path / KEY_FILE
    if not key.exists():
        return CacheEntry(path, kind, size, "unknown: written before svgt recorded what a folder holds (it will "
                          "when it next uses it)", False)
    try:
        info = json.loads(key.read_text())
    except (OSError, ValueError) as exc:
        return CacheEntry(path, kind, size, f"unreadable {KEY_FILE} ({exc})", False)
    versions = info.get("versions", {})
    stale = versions != current
    why = ""
    if stale:
        theirs = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
        ours = ", ".join(f"{k} {v}" for k, v in sorted(current.items()))
        why = f"written under {theirs}; this svgt runs {ours}"
    return CacheEntry(path, kind, size, _describe(info), stale, why)


def entries(root: Path | None = None) -> list[CacheEntry]:
    """Every item at the second level of the cache folder (`root`, default `cache_dir()`), in name order: the states
    and answers folders judged by their `store.key`, the rest listed as they are."""
    root = root or cache_dir()
    current = numerics_versions()
    out: list[CacheEntry] = []
    for top in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(top.iterdir()):
            if path.name.endswith(".tmp"):
                continue  # a write in progress, or one a crash left: not ours to judge
            if top.name in KEYED:
                out.append(_keyed(path, top.name, current))
            else:
                out.append(CacheEntry(path, top.name, _size(path), KINDS.get(top.name, "not svgt's to judge"),
                                      False))
    return out


def prune(items: list[CacheEntry]) -> int:
    """Delete the stale entries of `items`; returns the bytes freed."""
    freed = 0
    for entry in items:
        if not entry.stale:
            continue
        if entry.path.is_dir():
            shutil.rmtree(entry.path)
        else:
            entry.path.unlink()
        freed += entry.size
    return freed


def human(size: int) -> str:
    """`size` bytes as a short string (1 decimal, binary units)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
