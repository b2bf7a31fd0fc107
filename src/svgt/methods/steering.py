"""Shared pieces of the activation-steering baselines (CAA, ITI, RE-Control): reading activations of a frozen
backbone, adding vectors through hooks, and finding attention output projections.

Everything here attaches forward hooks only; the backbone's weights are never written.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..backbone import Backbone, BackboneError
from ..hooks import padded_positions
from ..prompts import encode_prompts, left_pad, right_pad
from .base import Method, MethodContext
from .tuning import tune


class _Stop(Exception):
    """Raised by the last capture hook: nothing above it is needed."""


def hidden_of(output: Any) -> torch.Tensor:
    """The hidden states in a decoder layer's output (a tensor, or a tuple whose first entry is one)."""
    return output[0] if isinstance(output, tuple) else output


def with_hidden(output: Any, hidden: torch.Tensor) -> Any:
    """`output` with its hidden states replaced, in the same structure."""
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def _first_input(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else next(iter(kwargs.values()))


@contextmanager
def attached(*registrations: Callable[[], RemovableHandle]) -> Iterator[list[RemovableHandle]]:
    """Register each hook; remove all of them on exit, also when registering or the body raises."""
    handles: list[RemovableHandle] = []
    try:
        for register in registrations:
            handles.append(register())
        yield handles
    finally:
        for handle in reversed(handles):
            handle.remove()


@torch.inference_mode()
def module_activations(backbone: Backbone, ids: torch.Tensor, mask: torch.Tensor, modules: Sequence[nn.Module],
                       inputs: bool = False) -> list[torch.Tensor]:
    """Full `(B, T, ·)` outputs (or first inputs, with `inputs=True`) of `modules` for one left-padded batch.

    Positions are computed from the mask exactly as in generation; the forward stops after the last capture.
    """
    captured: dict[int, torch.Tensor] = {}

    def make(i: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any = None) -> None:
            captured[i] = _first_input(args, kwargs) if inputs else hidden_of(output)
            if len(captured) == len(modules):
                raise _Stop

        return hook

    regs = [
        (lambda m=m, h=make(i): m.register_forward_pre_hook(h, with_kwargs=True)) if inputs
        else (lambda m=m, h=make(i): m.register_forward_hook(h, with_kwargs=True))
        for i, m in enumerate(modules)
    ]
    with attached(*regs):
        try:
            backbone.model(input_ids=ids, attention_mask=mask, position_ids=padded_positions(mask), use_cache=False)
        except _Stop:
            pass
    missing = [i for i in range(len(modules)) if i not in captured]
    if missing:
        raise BackboneError(f"modules {missing} never ran in the backbone's forward")
    return [captured[i] for i in range(len(modules))]


def last_token_activations(backbone: Backbone, prompts: list[str], modules: Sequence[nn.Module], inputs: bool = False,
                           batch_size: int = 16) -> list[torch.Tensor]:
    """Per module, `(N, dim)` float32 (on CPU) at the last prompt token of each chat-templated prompt."""
    if not prompts:
        raise ValueError("no prompts to collect activations from")
    parts: list[list[torch.Tensor]] = [[] for _ in modules]
    for start in range(0, len(prompts), batch_size):
        ids, mask = encode_prompts(backbone.tokenizer, prompts[start : start + batch_size], device=backbone.device)
        for store, acts in zip(parts, module_activations(backbone, ids, mask, modules, inputs)):
            store.append(acts[:, -1].float().cpu())  # left padding: the last column is every row's last token
    return [torch.cat(p) for p in parts]


def mean_prompt_activations(backbone: Backbone, prompts: list[str], modules: Sequence[nn.Module],
                            batch_size: int = 16) -> list[torch.Tensor]:
    """Per module, `(N, dim)` float32 (on CPU): each chat-templated prompt's output averaged over all its tokens
    (padding left out)."""
    if not prompts:
        raise ValueError("no prompts to collect activations from")
    parts: list[list[torch.Tensor]] = [[] for _ in modules]
    for start in range(0, len(prompts), batch_size):
        ids, mask = encode_prompts(backbone.tokenizer, prompts[start : start + batch_size], device=backbone.device)
        weights = (mask / mask.sum(1, keepdim=True)).float()
        for store, acts in zip(parts, module_activations(backbone, ids, mask, modules)):
            store.append(torch.einsum("btd,bt->bd", acts.float(), weights).cpu())
    return [torch.cat(p) for p in parts]


def response_activations(backbone: Backbone, prompts: list[str], responses: list[str], modules: Sequence[nn.Module],
                         reduce: str = "mean", inputs: bool = False, max_response_tokens: int = 32,
                         batch_size: int = 16) -> list[torch.Tensor]:
    """Per module, `(N, dim)` float32 (on CPU) over the first `max_response_tokens` tokens of each response,
    teacher-forced after the chat-templated prompt exactly as generation would have produced it: their average
    (`reduce="mean"`) or the last one's (`"last"`). Outputs, or first inputs with `inputs=True`."""
    from ..training.activations import encode_pair

    if reduce not in ("mean", "last"):
        raise ValueError(f"reduce must be 'mean' or 'last', got {reduce!r}")
    rows = [encode_pair(backbone, p, r, max_prompt=1 << 30, max_response=max_response_tokens)
            for p, r in zip(prompts, responses, strict=True)]
    empty = [i for i, row in enumerate(rows) if not row.response_ids]
    if empty:
        raise ValueError(f"responses {empty[:5]} are empty after tokenisation: nothing to read")
    pad = backbone.tokenizer.pad_token_id or 0
    parts: list[list[torch.Tensor]] = [[] for _ in modules]
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        # Prompts left-padded, responses right-padded: every response starts in the same column.
        p_ids, p_mask = left_pad([r.prompt_ids for r in chunk], pad, backbone.device)
        lengths = [len(r.response_ids) for r in chunk]
        r_ids, r_mask = right_pad([r.response_ids for r in chunk], pad, backbone.device)
        if reduce == "mean":
            weights = (r_mask / r_mask.sum(1, keepdim=True)).float()
        else:
            weights = F.one_hot(torch.tensor(lengths, device=r_ids.device) - 1, r_ids.shape[1]).float()
        ids, mask = torch.cat([p_ids, r_ids], 1), torch.cat([p_mask, r_mask], 1)
        for store, acts in zip(parts, module_activations(backbone, ids, mask, modules, inputs)):
            store.append(torch.einsum("btd,bt->bd", acts[:, p_ids.shape[1] :].float(), weights).cpu())
    return [torch.cat(p) for p in parts]


def add_to_output(module: nn.Module, vector: torch.Tensor) -> RemovableHandle:
    """Forward hook: `vector` added to the module's output hidden states at every position."""

    def hook(mod: nn.Module, args: tuple, output: Any) -> Any:
        hidden = hidden_of(output)
        return with_hidden(output, hidden + vector.to(hidden.device, hidden.dtype))

    return module.register_forward_hook(hook)


def add_to_input(module: nn.Module, vector: torch.Tensor) -> RemovableHandle:
    """Forward pre-hook: `vector` added to the module's first input at every position."""

    def hook(mod: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            return (args[0] + vector.to(args[0].device, args[0].dtype), *args[1:]), kwargs
        key = next(iter(kwargs))
        return args, {**kwargs, key: kwargs[key] + vector.to(kwargs[key].device, kwargs[key].dtype)}

    return module.register_forward_pre_hook(hook, with_kwargs=True)


def attention_out_proj(layer: nn.Module) -> nn.Module:
    """The attention output projection of a decoder layer, whose input is the concatenated per-head outputs."""
    for attn_name, proj_name in (("self_attn", "o_proj"), ("attn", "c_proj"), ("self_attn", "out_proj"),
                                 ("attention", "dense")):
        proj = getattr(getattr(layer, attn_name, None), proj_name, None)
        if isinstance(proj, nn.Module):
            return proj
    raise BackboneError(
        f"cannot find the attention output projection of {type(layer).__name__} "
        "(looked for self_attn.o_proj, attn.c_proj, self_attn.out_proj, attention.dense)"
    )


def attention_heads(backbone: Backbone) -> int:
    config = backbone.model.config
    config = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    for key in ("num_attention_heads", "n_head", "num_heads"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    raise BackboneError(f"cannot read the number of attention heads of {type(backbone.model).__name__}")


def depth_candidates(num_layers: int, fractions: Sequence[float] = (1 / 3, 1 / 2, 2 / 3)) -> list[int]:
    """Layer indices at the given fractions of depth, deduplicated, in order."""
    return sorted({min(num_layers - 1, max(0, round(f * num_layers))) for f in fractions})


def subsample(items: list[str], cap: int, seed: int) -> list[str]:
    """At most `cap` items: all of them if few enough, else a seeded random subset (order kept)."""
    if len(items) <= cap:
        return list(items)
    keep = sorted(random.Random(seed).sample(range(len(items)), cap))
    return [items[i] for i in keep]


def choose(method: Method, grid: list[dict[str, Any]], ctx: MethodContext, limit: int,
           max_new_tokens: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`tune` on the tuning set when there is a choice (or the reused choice, `Method.chosen`); a single candidate
    is taken as it is."""
    if len(grid) > 1:
        return tune(method, grid, ctx, limit=limit, max_new_tokens=max_new_tokens)
    return {**method.params, **(grid[0] if grid else {})}, []
