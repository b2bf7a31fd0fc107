"""Extract-layer activations, computed once per item and cached on disk.

Stages 1 and 2 only read states at the extract layer, so the backbone runs once per item (stopping at that layer) and
never again. The cache is a folder per backbone, layer, dtype and torch and transformers versions (a new release of
either can move a state's last bits, `svgt.backbone.numerics_versions`), of shard files; each shard names the items
it holds (by their token ids, which carry the prompt template) in its metadata. A call computes only the items no
shard holds and writes them as one new shard, so adding a hundred prompts to a data set of thousands costs the
hundred.
Several processes (`svgt.training.distributed`) split the missing items' batches and write the shard one process
would have written.

An item's states are what the backbone computes for it in a length-sorted, padded batch; a batch with other
neighbours pads it differently, which can move the low bits of a float. So a cache filled in several calls can hold
states that differ in their last bits from one filled in one call; both are the item's states to the precision
they are stored in.
"""

from __future__ import annotations

import collections
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..backbone import Backbone, cache_dir, numerics_versions
from ..cache import describe_store
from ..hooks import BackboneHooks, _get, _param_index, _StopForward, bridged_forward
from ..prompts import format_prompt, keep_end, left_pad, right_pad
from . import distributed


@dataclass
class EncodedPair:
    prompt_ids: list[int]
    response_ids: list[int]


@dataclass
class StateSet:
    """Ragged extract-layer states of N (prompt, response) items."""

    prompt_states: list[torch.Tensor]
    """Per item `(m_i, d)`."""
    response_states: list[torch.Tensor]
    """Per item `(t_i, d)`; empty `(0, d)` for standalone texts."""

    def __len__(self) -> int:
        return len(self.prompt_states)

    def __add__(self, other: "StateSet") -> "StateSet":
        return StateSet(self.prompt_states + other.prompt_states, self.response_states + other.response_states)


def encode_pair(backbone: Backbone, prompt: str, response: str | None, max_prompt: int, max_response: int,
                chat_template: bool = True) -> EncodedPair:
    """Token ids exactly as generation sees them: the templated prompt, then the response as generated tokens."""
    tok = backbone.tokenizer
    text = format_prompt(tok, prompt, chat_template)
    templated = chat_template and bool(getattr(tok, "chat_template", None))
    p_ids = keep_end(tok, tok(text, add_special_tokens=not templated)["input_ids"], max_prompt)
    r_ids = tok(response, add_special_tokens=False)["input_ids"][:max_response] if response else []
    return EncodedPair(p_ids, r_ids)


def storage_dtype(backbone: Backbone) -> torch.dtype:
    """The dtype states are kept in (on the CPU and on disk). float16 keeps three more mantissa bits than bfloat16
    but overflows past 65504: Gemma's residual stream goes beyond that (its cached states became inf and stage 2's
    loss NaN), and a bfloat16 backbone's states are bfloat16 already."""
    model_type = str(getattr(backbone.model.config, "model_type", ""))
    return torch.bfloat16 if backbone.dtype == torch.bfloat16 or model_type.startswith("gemma") else torch.float16


def _backbone_key(backbone: Backbone, layer: int) -> list:
    return [backbone.name, backbone.revision, backbone.num_layers, layer, str(backbone.dtype),
            str(storage_dtype(backbone)), numerics_versions()]


def _store_info(backbone: Backbone, layer: int) -> dict:
    """`_backbone_key`'s fields by name: what `svgt cache` shows of the folder."""
    name, revision, num_layers, layer, dtype, storage, versions = _backbone_key(backbone, layer)
    return {"backbone": name, "revision": revision, "layers": num_layers, "layer": layer, "dtype": dtype,
            "stored as": storage, "versions": versions}


def _store_key(backbone: Backbone, layer: int) -> str:
    """The cache folder's name: states of one backbone and layer, in one dtype, from one torch and transformers."""
    return hashlib.sha256(json.dumps(_backbone_key(backbone, layer)).encode()).hexdigest()[:20]


def _item_key(pair: EncodedPair) -> str:
    return hashlib.sha256(json.dumps([pair.prompt_ids, pair.response_ids]).encode()).hexdigest()[:24]


@torch.inference_mode()
def _compute_batches(backbone: Backbone, layer: int, pairs: list[EncodedPair], batch_size: int, desc: str,
                     batches: range | None = None) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """States of the pairs in `batches` (indices into the length-sorted batches; default all), by pair index."""
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i].prompt_ids) + len(pairs[i].response_ids))
    starts = list(range(0, len(order), batch_size))
    out: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    pad = backbone.tokenizer.pad_token_id or 0
    hooks = BackboneHooks(backbone.layers, layer, layer, None)
    keep = storage_dtype(backbone)

    def stop(module, args, output):
        hooks.captured = output[0] if isinstance(output, tuple) else output
        raise _StopForward

    with hooks:
        handle = backbone.layers[layer].register_forward_hook(stop)
        try:
            for j in tqdm(range(len(starts)) if batches is None else batches, desc=desc, unit="batch", leave=False,
                          disable=not distributed.is_main()):
                idx = order[starts[j] : starts[j] + batch_size]
                p_ids, p_mask = left_pad([pairs[i].prompt_ids for i in idx], pad, backbone.device)
                r_ids, r_mask = right_pad([pairs[i].response_ids for i in idx], pad, backbone.device)
                try:
                    bridged_forward(backbone.model, hooks, p_ids, p_mask, None, r_ids, r_mask, pad)
                except _StopForward:
                    pass
                states = hooks.captured.float()
                m = p_ids.shape[1]
                for row, i in enumerate(idx):
                    mp, n = len(pairs[i].prompt_ids), len(pairs[i].response_ids)
                    # `keep` on the CPU whatever the backbone's device: what the disk cache holds, and what the
                    # stages move to the module's device batch by batch.
                    out[i] = (states[row, m - mp : m].to("cpu", keep, copy=True),
                              states[row, m : m + n].to("cpu", keep, copy=True))
                    if not all(bool(torch.isfinite(t).all()) for t in out[i]):
                        raise FloatingPointError(
                            f"{backbone.name}: layer {layer}'s states of training item {i} are not finite as {keep} "
                            f"(largest |state| {float(states[row].abs().max()):.3g}); stages 1-2 would train on inf")
        finally:
            handle.remove()
    return out


def residual_norm_ratio(backbone: Backbone, insert_layer: int, extract_layer: int, prompts: list[list[int]]) -> float:
    """Mean over `prompts` (token ids, one forward each, so no padding) of the last token's residual-stream norm at
    the input of `insert_layer` over its norm at the output of `extract_layer`: the scale Bridge Tokens built from an
    extract-layer state need to join the stream at the insert layer (`ValueModuleConfig.bridge_scale`)."""
    if not prompts:
        raise ValueError("residual_norm_ratio needs at least one prompt")
    seen: dict[str, torch.Tensor] = {}
    hidden_index = _param_index(backbone.layers[0], "hidden_states")

    def take_input(module, args, kwargs):
        seen["in"] = _get(args, kwargs, "hidden_states", hidden_index)[0, -1].float()

    def take_output(module, args, output):
        seen["out"] = (output[0] if isinstance(output, tuple) else output)[0, -1].float()

    def stop(module, args, output):
        raise _StopForward

    ratios = []
    handles = [backbone.layers[insert_layer].register_forward_pre_hook(take_input, with_kwargs=True),
               backbone.layers[extract_layer].register_forward_hook(take_output),
               backbone.layers[max(insert_layer, extract_layer)].register_forward_hook(stop)]
    try:
        with torch.no_grad():
            for ids in prompts:
                try:
                    backbone.model(torch.tensor([ids], device=backbone.device), use_cache=False)
                except _StopForward:
                    pass
                ratios.append(float(seen["in"].norm() / seen["out"].norm()))
    finally:
        for h in handles:
            h.remove()
    return sum(ratios) / len(ratios)


def compute_states(backbone: Backbone, layer: int, pairs: list[EncodedPair], batch_size: int = 16,
                   desc: str = "activations") -> StateSet:
    """Run the backbone up to `layer` on every pair (length-sorted batches) and return the states, in input order."""
    done = _compute_batches(backbone, layer, pairs, batch_size, desc)
    return StateSet([done[i][0] for i in range(len(pairs))], [done[i][1] for i in range(len(pairs))])


def _tensors(states: StateSet, d: int) -> dict[str, torch.Tensor]:
    """What a cache file holds: the states concatenated, with each item's lengths."""
    return {
        "prompt": torch.cat(states.prompt_states) if states.prompt_states else torch.zeros(0, d),
        "response": torch.cat(states.response_states) if states.response_states else torch.zeros(0, d),
        "prompt_lengths": torch.tensor([s.shape[0] for s in states.prompt_states], dtype=torch.long),
        "response_lengths": torch.tensor([s.shape[0] for s in states.response_states], dtype=torch.long),
    }


def _save(path: Path, tensors: dict[str, torch.Tensor], items: list[str] | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")  # written whole, then renamed: a reader never sees half a file
    metadata = None if items is None else {"items": json.dumps(items)}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    tmp.replace(path)


def _states_of(data: dict[str, torch.Tensor]) -> StateSet:
    p_len, r_len = data["prompt_lengths"].tolist(), data["response_lengths"].tolist()
    return StateSet(list(torch.split(data["prompt"], p_len)), list(torch.split(data["response"], r_len)))


def _shard_items(path: Path) -> list[str]:
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("items", "[]"))


def _index(store: Path) -> dict[str, tuple[Path, int]]:
    """Where each cached item is: its shard and its place there (shards read in name order; only headers read)."""
    where: dict[str, tuple[Path, int]] = {}
    for path in sorted(store.glob("*.safetensors")):
        for i, key in enumerate(_shard_items(path)):
            where.setdefault(key, (path, i))
    return where


def _shard_name(keys: list[str]) -> str:
    """A shard's file stem (and its parts'), from the items it holds."""
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:20]


def _write_shard(store: Path, keys: list[str], states: StateSet, d: int) -> None:
    _save(store / f"{_shard_name(keys)}.safetensors", _tensors(states, d), keys)


def cached_states(backbone: Backbone, layer: int, pairs: list[EncodedPair], batch_size: int = 16,
                  desc: str = "activations", root: Path | None = None) -> StateSet:
    """`compute_states`, memoised per item on disk (safetensors, in `storage_dtype`) under the svgt cache: only the
    items no earlier call cached run through the backbone, and they are written as one new shard.

    Under several processes each computes every `world_size()`-th batch of the missing items and writes it to a part
    file; the main process joins the parts into the shard a single process would have written, and every process
    reads the cache. The cache folder must be one all processes see (one machine, or a shared file system)."""
    folder = root or cache_dir() / "activations"
    store = folder / _store_key(backbone, layer)
    store.mkdir(parents=True, exist_ok=True)
    if distributed.is_main():
        describe_store(store, _store_info(backbone, layer))
    keys = [_item_key(p) for p in pairs]
    where = _index(store)
    missing = distributed.missing(keys, where)
    if missing:
        todo = [pairs[i] for i in missing]
        todo_keys = [keys[i] for i in missing]
        if distributed.world_size() == 1:
            _write_shard(store, todo_keys, compute_states(backbone, layer, todo, batch_size, desc),
                         backbone.hidden_size)
        else:
            _compute_in_parts(backbone, layer, todo, todo_keys, store, batch_size, desc)
        where = _index(store)
    return _load(where, keys)


def _load(where: dict[str, tuple[Path, int]], keys: list[str]) -> StateSet:
    """The items `keys`, in order, from the shards that hold them (each shard read once). An item is a view of its
    shard's tensors, which keeps the whole shard in memory; from a shard this call uses only part of, items are
    copied, so that a few items do not hold a large shard."""
    shards: dict[Path, tuple[StateSet, bool]] = {}
    used = collections.Counter(path for path, _ in {where[key] for key in keys})
    prompt, response = [], []
    for key in keys:
        path, i = where[key]
        if path not in shards:
            states = _states_of(load_file(str(path)))
            shards[path] = (states, used[path] < len(states))
        states, partial = shards[path]
        p, r = states.prompt_states[i], states.response_states[i]
        prompt.append(p.clone() if partial else p)
        response.append(r.clone() if partial else r)
    return StateSet(prompt, response)


def _compute_in_parts(backbone: Backbone, layer: int, todo: list[EncodedPair], todo_keys: list[str], store: Path,
                      batch_size: int, desc: str) -> None:
    n_batches = -(-len(todo) // batch_size)
    done = _compute_batches(backbone, layer, todo, batch_size, desc, distributed.my_batches(n_batches))
    stem = _shard_name(todo_keys)
    _write_part(store / f"{stem}.part{distributed.rank()}", done, backbone.hidden_size)
    distributed.barrier()
    if distributed.is_main():
        for r in range(distributed.world_size()):
            other = store / f"{stem}.part{r}"
            done.update(_read_part(other))
            other.unlink()
        merged = StateSet([done[i][0] for i in range(len(todo))], [done[i][1] for i in range(len(todo))])
        _write_shard(store, todo_keys, merged, backbone.hidden_size)
    distributed.barrier()


def _write_part(path: Path, done: dict[int, tuple[torch.Tensor, torch.Tensor]], d: int) -> None:
    """One process's share of a shard: its items' states, and which items they are."""
    index = sorted(done)
    part = StateSet([done[i][0] for i in index], [done[i][1] for i in index])
    _save(path, {**_tensors(part, d), "index": torch.tensor(index, dtype=torch.long)})


def _read_part(path: Path) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    data = load_file(str(path))
    states = _states_of(data)
    return {i: (p, r) for i, p, r in zip(data["index"].tolist(), states.prompt_states, states.response_states)}
