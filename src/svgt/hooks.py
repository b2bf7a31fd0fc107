"""Attaching to a frozen backbone through forward hooks, and one bridged forward pass.

Nothing in the backbone is replaced or written. While attached, every decoder layer has a pre-hook and the extract
layer has a forward hook; all are removed on exit, also when the body raises. What the hooks do in a given forward
is set by a `ForwardPlan`:

- layers below the insert layer get an attention mask that blocks the Bridge Token columns (invariant 1: those
  layers never see bridge positions, for any query);
- in a fused refresh the bridge rows can skip the layers below the insert layer altogether (`lower_skip`): what those
  layers would compute there is masked for every query and overwritten at the insert layer, so only the token rows
  run through them and their cache gets no columns for the new bridge;
- layers from the insert layer up may get an extra block (used when a refreshed bridge is computed in the same pass
  as the next token: bridge queries must see only the prompt and each other, as at their honest positions);
- the insert layer's input hidden states at the bridge rows are overwritten with the Bridge Tokens;
- the extract layer's output is kept, for the value module to read.

The blocks are applied on top of whatever mask the model built itself (padding, causal, sliding window), in its own
format (bool for sdpa, additive float for eager), so no model-specific code is needed.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle
from transformers import DynamicCache
from transformers.pytorch_utils import Conv1D


@dataclass
class ForwardPlan:
    bridge_rows: slice | None = None
    """Rows of this forward's input that are Bridge Tokens."""
    bridge_values: torch.Tensor | None = None
    """`(B, K, d)` values written at `bridge_rows` at the input of the insert layer."""
    block_lower: torch.Tensor | None = None
    """`(1 or B, q, kv)` bool, True = may not attend; for layers below the insert layer."""
    block_upper: torch.Tensor | None = None
    """Same, for layers from the insert layer up."""
    lower_skip: slice | None = None
    """Columns of this forward's new cache entries that layers below the insert layer do not get. With it, the rows
    `bridge_rows` are dropped at layer 0 and put back (as `bridge_values`) at the insert layer, and `block_lower` is
    `(1 or B, q - K, kv - K)`: the lower layers' cache simply has no such columns."""
    upper_overwrite: slice | None = None
    """Columns of the cache that, in layers from the insert layer up, the new entries at `lower_skip` are written
    over (a fused refresh: the new bridge takes the old one's place; the cache is a `BridgeCache`). Those layers'
    mask then gives these columns what it gave `lower_skip`'s and drops `lower_skip`'s, as their cache has."""
    _memo: dict[tuple[Any, ...], tuple[Any, Any]] = field(default_factory=dict)

    def once(self, tag: Any, obj: Any, make: Any) -> Any:
        """`make(obj)`, computed once per forward for each (tag, object): every layer of a kind gets the same mask
        and rotary tensors. The object is kept alive with the result, so its id cannot be reused meanwhile."""
        key = (tag, id(obj))
        if key not in self._memo:
            self._memo[key] = (obj, make(obj))
        return self._memo[key][1]


def accepts(model: nn.Module, name: str) -> bool:
    """Whether `model.forward` takes the keyword `name` (`logits_to_keep`, and the cache's, vary by version)."""
    return name in inspect.signature(model.forward).parameters


def keep_logits(model: nn.Module, last: int) -> dict[str, int]:
    """The keyword that limits `model`'s logits to the `last` positions, where it takes one (else, or for `last` 0,
    none: every position's logits). Over Gemma's 262k-token vocabulary every position's logits cost more than the
    layers."""
    return {"logits_to_keep": last} if last and accepts(model, "logits_to_keep") else {}


def cache_keyword(model: nn.Module) -> str:
    """The keyword `model.forward` takes its KV cache by: transformers 5.24 renamed `past_key_values` to `cache`."""
    return "cache" if accepts(model, "cache") else "past_key_values"


def _param_index(module: nn.Module, name: str) -> int | None:
    params = list(inspect.signature(module.forward).parameters)
    return params.index(name) if name in params else None


class BackboneHooks:
    """Context manager that attaches the hooks to `layers` and removes them on exit."""

    def __init__(self, layers: nn.ModuleList, insert_layer: int, extract_layer: int, attn_implementation: str | None):
        self.layers = layers
        self.insert_layer = insert_layer
        self.extract_layer = extract_layer
        self.eager = attn_implementation == "eager"
        self.plan: ForwardPlan | None = None
        self.captured: torch.Tensor | None = None
        self._handles: list[RemovableHandle] = []
        # GPT-2 blocks take the mask positionally, Llama-style layers by keyword; find where it goes once.
        self._mask_index = _param_index(layers[0], "attention_mask")
        self._hidden_index = _param_index(layers[0], "hidden_states")

    def __enter__(self) -> BackboneHooks:
        try:
            for i, layer in enumerate(self.layers):
                self._handles.append(layer.register_forward_pre_hook(self._make_pre_hook(i), with_kwargs=True))
            self._handles.append(self.layers[self.extract_layer].register_forward_hook(self._capture))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.plan = None
        self.captured = None

    def _capture(self, module: nn.Module, args: Any, output: Any) -> None:
        self.captured = output[0] if isinstance(output, tuple) else output

    def _make_pre_hook(self, index: int):
        upper = index >= self.insert_layer
        is_insert = index == self.insert_layer
        is_first = index == 0

        def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            plan = self.plan
            if plan is None:
                return None
            args = list(args)
            skip = plan.lower_skip is not None and self.insert_layer > 0
            if skip and not upper:
                self._drop_bridge_rows(plan, args, kwargs, is_first)
            block = plan.block_upper if upper else plan.block_lower
            if block is not None:
                mask = _get(args, kwargs, "attention_mask", self._mask_index)
                _set(args, kwargs, "attention_mask", self._mask_index, self._blocked(plan, mask, block, upper))
            if is_insert and plan.bridge_rows is not None:
                hidden = _get(args, kwargs, "hidden_states", self._hidden_index)
                rows = plan.bridge_rows
                values = plan.bridge_values.to(hidden.dtype)
                # Without the skip the bridge rows hold placeholders to overwrite; with it they are absent.
                rest = rows.start if skip else rows.stop
                hidden = torch.cat([hidden[:, : rows.start], values, hidden[:, rest:]], dim=1)
                _set(args, kwargs, "hidden_states", self._hidden_index, hidden)
            return tuple(args), kwargs

        return hook

    def _drop_bridge_rows(self, plan: ForwardPlan, args: list, kwargs: dict, is_first: bool) -> None:
        """A lower layer's inputs without the bridge rows (and, in its mask, without the new bridge columns)."""
        rows, cols = plan.bridge_rows, plan.lower_skip
        if is_first:  # later lower layers get layer 0's shortened output
            hidden = _get(args, kwargs, "hidden_states", self._hidden_index)
            _set(args, kwargs, "hidden_states", self._hidden_index, _cut(hidden, rows, 1))
        mask = _get(args, kwargs, "attention_mask", self._mask_index)
        if isinstance(mask, torch.Tensor):
            cut = plan.once("mask", mask, lambda m: _cut(_cut(m, rows, -2), cols, -1))
            _set(args, kwargs, "attention_mask", self._mask_index, cut)
        embeddings = kwargs.get("position_embeddings")
        if isinstance(embeddings, tuple):  # rotary (cos, sin), each (B, q, d_head)
            kwargs["position_embeddings"] = tuple(
                plan.once("rotary", t, lambda x: _cut(x, rows, -2)) for t in embeddings)
        for name in ("position_ids", "cache_position"):
            if isinstance(kwargs.get(name), torch.Tensor):
                kwargs[name] = plan.once(name, kwargs[name], lambda x: _cut(x, rows, -1))

    def _blocked(self, plan: ForwardPlan, mask: torch.Tensor | None, block: torch.Tensor, upper: bool) -> torch.Tensor:
        def make(m: torch.Tensor | None) -> torch.Tensor:
            blocked = self._apply_block(m, block)  # a new tensor: changing it leaves the model's mask as it was
            if upper and plan.upper_overwrite is not None and plan.lower_skip is not None:
                blocked[..., plan.upper_overwrite] = blocked[..., plan.lower_skip]
                blocked = _cut(blocked, plan.lower_skip, -1)
            return blocked

        return plan.once(("block", upper), mask, make)

    def _apply_block(self, mask: torch.Tensor | None, block: torch.Tensor) -> torch.Tensor:
        if mask is None:
            # sdpa skipped the mask (no padding, plain causal): rebuild the causal pattern by cache index.
            q, kv = block.shape[-2:]
            allowed = torch.ones(q, kv, dtype=torch.bool, device=block.device).tril(kv - q)
            new = (allowed & ~block)[:, None]
            if self.eager:
                new = torch.zeros(new.shape, dtype=torch.float32, device=block.device).masked_fill(
                    ~new, torch.finfo(torch.float32).min
                )
            return new
        if mask.dtype == torch.bool:
            return mask & ~block[:, None]
        return mask.masked_fill(block[:, None], torch.finfo(mask.dtype).min)


class HeadInput:
    """Context manager: while open, a pre-hook on `model`'s LM head keeps the head's input (`hidden`: the final
    states of the positions whose logits the forward computes) and, with `skip`, hands the head none of them, so
    the forward computes no logits at all. Over Gemma 3's 262k-token vocabulary the head is half a decoding step,
    and a guided prompt forward whose every row gets a bridge never reads its logits (each row's first token is
    predicted at its last Bridge Token). `available` is False for a model without an output embedding module."""

    def __init__(self, model: nn.Module, skip: bool) -> None:
        self.head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        self.available = isinstance(self.head, nn.Module)
        self.skip = skip and self.available
        self.hidden: torch.Tensor | None = None
        self._handle: RemovableHandle | None = None

    def __enter__(self) -> HeadInput:
        if self.available:
            self._handle = self.head.register_forward_pre_hook(self._take)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _take(self, module: nn.Module, args: tuple) -> tuple | None:
        self.hidden = args[0]
        return (args[0][..., :0, :], *args[1:]) if self.skip else None

    def logits(self) -> torch.Tensor:
        """`(B, V)` float logits of the last kept position, from the head called directly."""
        return self.head(self.hidden[:, -1:])[:, -1].float()


class IdleLinears:
    """Context manager: while open, every linear map inside `modules` is handed none of its input's rows and
    answers zeros of the shape it would have answered, so its weights are not read.

    For the first bridge's own forward, every row of which is a Bridge Token: in the layers below the insert layer,
    what those rows compute is masked for every query and overwritten at the insert layer, yet computing it reads
    each layer's weights in full, which at a few rows is nearly all of a layer's time. The layers themselves still
    run (a hook cannot skip a layer, and attention cannot take zero rows), so their cache gets the bridge's columns
    as every layer's must, with keys and values made from zeros: finite, and masked like any. `nn.Linear` and GPT-2's
    `Conv1D` are left idle; other module types (quantised linears, say) run as usual. `idled`: calls answered with
    zeros."""

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        self.linears = [m for module in modules for m in module.modules() if _out_features(m) is not None]
        self.idled = 0
        self._shapes: dict[nn.Module, torch.Size] = {}
        self._handles: list[RemovableHandle] = []

    def __enter__(self) -> IdleLinears:
        try:
            for linear in self.linears:
                self._handles.append(linear.register_forward_pre_hook(self._take))
                self._handles.append(linear.register_forward_hook(self._answer))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._shapes.clear()

    def _take(self, module: nn.Module, args: tuple) -> tuple | None:
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            return None
        self._shapes[module] = x.shape
        return (x[..., :0, :], *args[1:])

    def _answer(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        shape = self._shapes.pop(module, None)
        if shape is None:
            return None
        self.idled += 1
        return output.new_zeros(*shape[:-1], _out_features(module))


def _out_features(module: nn.Module) -> int | None:
    """Output width of a plain linear map (`nn.Linear`, or GPT-2's `Conv1D`, which transposes its weight); None for
    any other module, subclasses included: a quantised linear's kernel may not take zero rows."""
    if type(module) is nn.Linear:
        return module.out_features
    return module.nf if type(module) is Conv1D else None


class BridgeCache(DynamicCache):
    """A `DynamicCache` that can write a fused refresh's new Bridge Token entries over the old bridge's columns.

    While `overwrite` is set, each layer from its first layer up writes the first entries it is given (the bridge
    rows') over its columns, in place, and appends only the rest (the token's), so attention in that same forward
    reads the new bridge where the old one was, and every layer's cache grows by the token's entries alone. Appending
    the bridge and moving it afterwards copied every upper layer's whole cache once more per refresh."""

    overwrite: tuple[int, slice] | None = None
    """(first layer, columns) for the forward in progress; None: every update appends, as a `DynamicCache`'s."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if self.overwrite is not None and layer_idx >= self.overwrite[0]:
            cols = self.overwrite[1]
            n = cols.stop - cols.start
            layer = self.layers[layer_idx]
            layer.keys[:, :, cols] = key_states[:, :, :n]
            layer.values[:, :, cols] = value_states[:, :, :n]
            key_states, value_states = key_states[:, :, n:], value_states[:, :, n:]
        return super().update(key_states, value_states, layer_idx, *args, **kwargs)


def _cut(t: torch.Tensor, span: slice, dim: int) -> torch.Tensor:
    """`t` without the indices `span` along `dim`."""
    return torch.cat([t.narrow(dim, 0, span.start), t.narrow(dim, span.stop, t.shape[dim] - span.stop)], dim=dim)


def _get(args: list, kwargs: dict, name: str, index: int | None) -> Any:
    if name in kwargs:
        return kwargs[name]
    if index is not None and index < len(args):
        return args[index]
    return None


def _set(args: list, kwargs: dict, name: str, index: int | None, value: Any) -> None:
    if name not in kwargs and index is not None and index < len(args):
        args[index] = value
    else:
        kwargs[name] = value


def bridge_block(q: int, kv: int, bridge_cols: slice, device: torch.device) -> torch.Tensor:
    """`(1, q, kv)` block of the bridge columns for every query (what layers below the insert layer get)."""
    block = torch.zeros(1, q, kv, dtype=torch.bool, device=device)
    block[..., bridge_cols] = True
    return block


def padded_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids for a left-padded batch, exactly as transformers' `generate` computes them."""
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.masked_fill(attention_mask == 0, 1)


def bridged_forward(
    model: nn.Module,
    hooks: BackboneHooks,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    bridge_tokens: torch.Tensor | None,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor | None = None,
    placeholder_id: int = 0,
    logits_to_keep: int = 0,
) -> Any:
    """One full forward over `[prompt (M), Bridge Tokens (K), response (T)]` without a cache.

    This is the reference that KV-cached generation must equal, and the teacher-forced pass of stage 3.
    The prompt is left-padded, the response right-padded; positions are honest: prompt `0..m-1`, bridge `m..m+K-1`,
    response from `m+K`, per row. The extract-layer states land in `hooks.captured`. `logits_to_keep` (transformers'
    keyword; 0: every position) spares a reference for one step the logits of every other position, which for a
    262k-token vocabulary (Gemma) cost more than the layers.
    """
    batch, m_len = prompt_ids.shape
    k = 0 if bridge_tokens is None else bridge_tokens.shape[1]
    device = prompt_ids.device
    if response_mask is None:
        response_mask = torch.ones_like(response_ids)
    ids = torch.cat([prompt_ids, torch.full((batch, k), placeholder_id, device=device), response_ids], dim=1)
    attn = torch.cat([prompt_mask, torch.ones(batch, k, dtype=prompt_mask.dtype, device=device), response_mask], 1)
    lengths = prompt_mask.long().sum(-1, keepdim=True)
    tail = lengths + torch.arange(k + response_ids.shape[1], device=device)
    positions = torch.cat([padded_positions(prompt_mask), tail], dim=1)
    total = ids.shape[1]
    plan = ForwardPlan()
    if k:
        cols = slice(m_len, m_len + k)
        plan = ForwardPlan(cols, bridge_tokens, bridge_block(total, total, cols, device))
    hooks.plan = plan
    try:
        return model(input_ids=ids, attention_mask=attn, position_ids=positions, use_cache=False,
                     **keep_logits(model, logits_to_keep))
    finally:
        hooks.plan = None


@torch.no_grad()
def prompt_prefix(model: nn.Module, hooks: BackboneHooks, prompt_ids: torch.Tensor,
                  prompt_mask: torch.Tensor) -> tuple[torch.Tensor, DynamicCache]:
    """A left-padded prompt batch through every layer into a fresh KV cache: its extract-layer states `(B, M, d)` and
    the cache, which `bridged_continuation` continues from.

    Whatever follows the prompt cannot change what its positions compute (the mask is causal), so a pass that needs
    gradients through the bridge (stage 3) runs the prompt once, here, outside autograd, instead of carrying its rows
    through the graph. `hooks` must be attached."""
    cache = DynamicCache()
    hooks.plan = ForwardPlan()
    try:
        model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=padded_positions(prompt_mask),
              use_cache=True, **{cache_keyword(model): cache}, **keep_logits(model, 1))
    finally:
        hooks.plan = None
    return hooks.captured.float(), cache


def bridged_continuation(
    model: nn.Module,
    hooks: BackboneHooks,
    prefix: DynamicCache,
    prompt_mask: torch.Tensor,
    bridge_tokens: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor | None = None,
    placeholder_id: int = 0,
    logits_to_keep: int = 0,
) -> Any:
    """`bridged_forward` for `[Bridge Tokens (K), response (T)]` after a prompt already in `prefix` (from
    `prompt_prefix`, which this extends): the same logits and extract-layer states (`hooks.captured`, here only for
    the K + T new rows), the same honest positions and the same invisibility of the bridge below the insert layer,
    without recomputing the prompt. `prefix` is used up: it then holds the new rows too."""
    batch, m_len = prompt_mask.shape
    k, t = bridge_tokens.shape[1], response_ids.shape[1]
    device = response_ids.device
    if response_mask is None:
        response_mask = torch.ones_like(response_ids)
    ids = torch.cat([torch.full((batch, k), placeholder_id, device=device), response_ids], dim=1)
    attn = torch.cat([prompt_mask, torch.ones(batch, k, dtype=prompt_mask.dtype, device=device), response_mask], 1)
    positions = prompt_mask.long().sum(-1, keepdim=True) + torch.arange(k + t, device=device)
    cols = slice(m_len, m_len + k)
    hooks.plan = ForwardPlan(slice(0, k), bridge_tokens, bridge_block(k + t, m_len + k + t, cols, device))
    try:
        return model(input_ids=ids, attention_mask=attn, position_ids=positions, use_cache=True,
                     **{cache_keyword(model): prefix}, **keep_logits(model, logits_to_keep))
    finally:
        hooks.plan = None


class _StopForward(Exception):
    """Raised by a hook right after the layer that is needed: nothing above it runs."""


def _raise_stop(module: nn.Module, args: Any, output: Any) -> None:
    raise _StopForward


@torch.no_grad()
def prompt_states(model: nn.Module, hooks: BackboneHooks, prompt_ids: torch.Tensor,
                  prompt_mask: torch.Tensor) -> torch.Tensor:
    """Extract-layer states `(B, M, d)` of a left-padded prompt batch; the forward stops after that layer.

    `hooks` must be attached (inside its `with`)."""
    stop = hooks.layers[hooks.extract_layer].register_forward_hook(_raise_stop)
    try:
        bridged_forward(model, hooks, prompt_ids, prompt_mask, None, prompt_ids[:, :0])
    except _StopForward:
        pass
    finally:
        stop.remove()
    return hooks.captured.float()
