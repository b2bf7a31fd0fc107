"""Extract-layer activations, computed once and cached on disk.

Stages 1 and 2 only read states at the extract layer, so the backbone runs once per dataset (stopping at that layer)
and never again: a second `svgt train` finds the file keyed by backbone, layer, template and data fingerprint.
Several processes (`svgt.training.distributed`) split the batches and write the same file under the same key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..backbone import Backbone, cache_dir
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


def _cache_key(backbone: Backbone, layer: int, pairs: list[EncodedPair]) -> str:
    h = hashlib.sha256()
    key: list = [backbone.name, backbone.revision, backbone.num_layers, layer]
    if backbone.dtype != torch.float32:  # float32 keys stay as they were, so existing caches still match
        key.append(str(backbone.dtype))
    stored = storage_dtype(backbone)
    if stored != torch.float16:
        key.append(f"stored as {stored}")
    h.update(json.dumps(key).encode())
    for p in pairs:
        h.update(json.dumps([p.prompt_ids, p.response_ids]).encode())
    return h.hexdigest()[:20]


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


def _save(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    tmp = path.with_suffix(".tmp")  # written whole, then renamed: a reader never sees half a file
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    tmp.replace(path)


def _states_of(data: dict[str, torch.Tensor]) -> StateSet:
    p_len, r_len = data["prompt_lengths"].tolist(), data["response_lengths"].tolist()
    return StateSet(list(torch.split(data["prompt"], p_len)), list(torch.split(data["response"], r_len)))


def cached_states(backbone: Backbone, layer: int, pairs: list[EncodedPair], batch_size: int = 16,
                  desc: str = "activations", root: Path | None = None) -> StateSet:
    """`compute_states`, memoised on disk (safetensors, in `storage_dtype`) under the svgt cache.

    Under several processes each computes every `world_size()`-th batch and writes it to a part file beside the
    cache file; the main process joins the parts into the cache file a single process would have written (same
    key, same batches), and every process reads that file. The cache folder must be one all processes see (one
    machine, or a shared file system)."""
    folder = (root or cache_dir() / "activations")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_cache_key(backbone, layer, pairs)}.safetensors"
    if distributed.from_main(path.exists()):
        return _states_of(load_file(str(path)))
    if distributed.world_size() == 1:
        states = compute_states(backbone, layer, pairs, batch_size, desc)
        _save(path, _tensors(states, backbone.hidden_size))
        return states
    n_batches = -(-len(pairs) // batch_size)
    done = _compute_batches(backbone, layer, pairs, batch_size, desc, distributed.my_batches(n_batches))
    part = path.with_name(f"{path.stem}.part{distributed.rank()}.safetensors")
    _write_part(part, done, backbone.hidden_size)
    distributed.barrier()
    if distributed.is_main():
        for r in range(distributed.world_size()):
            other = path.with_name(f"{path.stem}.part{r}.safetensors")
            done.update(_read_part(other))
            other.unlink()
        merged = StateSet([done[i][0] for i in range(len(pairs))], [done[i][1] for i in range(len(pairs))])
        _save(path, _tensors(merged, backbone.hidden_size))
    distributed.barrier()
    return _states_of(load_file(str(path)))


def _write_part(path: Path, done: dict[int, tuple[torch.Tensor, torch.Tensor]], d: int) -> None:
    """One process's share of a cache file: its items' states, and which items they are."""
    index = sorted(done)
    part = StateSet([done[i][0] for i in index], [done[i][1] for i in index])
    _save(path, {**_tensors(part, d), "index": torch.tensor(index, dtype=torch.long)})


def _read_part(path: Path) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    data = load_file(str(path))
    states = _states_of(data)
    return {i: (p, r) for i, p, r in zip(data["index"].tolist(), states.prompt_states, states.response_states)}
