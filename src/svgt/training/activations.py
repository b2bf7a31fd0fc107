"""Extract-layer activations, computed once and cached on disk.

Stages 1 and 2 only read states at the extract layer, so the backbone runs once per dataset (stopping at that layer)
and never again: a second `svgt train` finds the file keyed by backbone, layer, template and data fingerprint.
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
from ..hooks import BackboneHooks, _StopForward, bridged_forward
from ..prompts import format_prompt, left_pad, right_pad


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
    p_ids = tok(text, add_special_tokens=not templated)["input_ids"]
    if len(p_ids) > max_prompt:
        # Keep the end: the template's assistant header is what the trigger state sits on.
        p_ids = p_ids[-max_prompt:]
    r_ids = tok(response, add_special_tokens=False)["input_ids"][:max_response] if response else []
    return EncodedPair(p_ids, r_ids)


def _cache_key(backbone: Backbone, layer: int, pairs: list[EncodedPair]) -> str:
    h = hashlib.sha256()
    key: list = [backbone.name, backbone.revision, backbone.num_layers, layer]
    if backbone.dtype != torch.float32:  # float32 keys stay as they were, so existing caches still match
        key.append(str(backbone.dtype))
    h.update(json.dumps(key).encode())
    for p in pairs:
        h.update(json.dumps([p.prompt_ids, p.response_ids]).encode())
    return h.hexdigest()[:20]


@torch.inference_mode()
def compute_states(backbone: Backbone, layer: int, pairs: list[EncodedPair], batch_size: int = 16,
                   desc: str = "activations") -> StateSet:
    """Run the backbone up to `layer` on every pair (length-sorted batches) and return the states, in input order."""
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i].prompt_ids) + len(pairs[i].response_ids))
    prompt_states: list[torch.Tensor | None] = [None] * len(pairs)
    response_states: list[torch.Tensor | None] = [None] * len(pairs)
    pad = backbone.tokenizer.pad_token_id or 0
    hooks = BackboneHooks(backbone.layers, layer, layer, None)

    def stop(module, args, output):
        hooks.captured = output[0] if isinstance(output, tuple) else output
        raise _StopForward

    with hooks:
        handle = backbone.layers[layer].register_forward_hook(stop)
        try:
            for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
                idx = order[start : start + batch_size]
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
                    # fp16 on the CPU whatever the backbone's device: what the disk cache holds, and what the
                    # stages move to the module's device batch by batch.
                    prompt_states[i] = states[row, m - mp : m].to("cpu", torch.float16, copy=True)
                    response_states[i] = states[row, m : m + n].to("cpu", torch.float16, copy=True)
        finally:
            handle.remove()
    return StateSet(prompt_states, response_states)  # type: ignore[arg-type]


def cached_states(backbone: Backbone, layer: int, pairs: list[EncodedPair], batch_size: int = 16,
                  desc: str = "activations", root: Path | None = None) -> StateSet:
    """`compute_states`, memoised on disk (fp16 safetensors) under the svgt cache."""
    folder = (root or cache_dir() / "activations")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_cache_key(backbone, layer, pairs)}.safetensors"
    if path.exists():
        data = load_file(str(path))
        p_len, r_len = data["prompt_lengths"].tolist(), data["response_lengths"].tolist()
        return StateSet(list(torch.split(data["prompt"], p_len)), list(torch.split(data["response"], r_len)))
    states = compute_states(backbone, layer, pairs, batch_size, desc)
    d = backbone.hidden_size
    tensors = {
        "prompt": torch.cat(states.prompt_states) if states.prompt_states else torch.zeros(0, d),
        "response": torch.cat(states.response_states) if states.response_states else torch.zeros(0, d),
        "prompt_lengths": torch.tensor([s.shape[0] for s in states.prompt_states], dtype=torch.long),
        "response_lengths": torch.tensor([s.shape[0] for s in states.response_states], dtype=torch.long),
    }
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    tmp.replace(path)
    return states
