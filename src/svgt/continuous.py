"""Continuous batching: one guided decoding batch that rows join at step boundaries and leave as soon as they end.

A `ContinuousBatch` is a `GuidedDecoder` whose rows change while it runs, which is what lets a server start a new
request within a step instead of after the whole running batch:

- `join(ids, mask)` prefills the new prompts on their own (their prompt forward and first bridge: exactly the setup
  of a fresh batch, gate included) and merges their cache rows into the running layout. The prompt region widens to
  the longest prompt (shorter ones are left-padded with masked columns, as in any batch); the Bridge Token columns
  stay shared (if no running row had a bridge and a joining one has, K masked columns are appended for the running
  rows first); and a joining row is masked at every column it has no entry for (the running rows' responses so
  far). Positions stay honest per row, so no row can tell it was merged.
- `pick()` chooses every row's next token; `leave(rows)` drops rows (finished, cancelled), and with them the cache
  columns no remaining row can see, so the cache does not grow with the rows that came and went; `advance()` feeds
  the picked tokens of the rows that stayed.
- Each row keeps its own refresh schedule, counted from its own first token, and its own bridge; a refresh
  recomputes the bridge columns of every row, each from its own Bridge Tokens (unchanged for rows not due).

So a greedy row gets the tokens it would get alone; the tests check this on several families. Not supported:
`exact` refresh, which rebuilds every row's response from one shared step count (the server runs such requests as
whole batches). A backbone with sliding-window layers (Gemma 3) counts its window in cache columns, and a merged row
spans more columns than it would alone (the running rows' responses sit between its prompt and its own tokens):
`fits()` says whether a join keeps every row's span inside the window, where merging changes nothing; the server
queues a request that does not fit until the batch drains.
"""

from __future__ import annotations

from typing import Any

import torch

from .backbone import Backbone
from .config import GenerationConfig
from .generation import GuidedDecoder, RowTelemetry, _pick
from .module import ValueModule


class ContinuousBatch(GuidedDecoder):
    """A running batch that prompts join and rows leave at step boundaries. Use as a context manager (it attaches
    the hooks for its lifetime); the cycle is `join` (any time every row has a token pending, i.e. not between
    `pick` and `advance`), `pick`, `leave`, `advance`."""

    def __init__(self, backbone: Backbone, module: ValueModule | None, cfg: GenerationConfig) -> None:
        if cfg.refresh_every and cfg.refresh_mode == "exact":
            raise ValueError("continuous batching supports refresh_mode 'fast' (or no refresh), not 'exact': "
                             "exact refresh recomputes every row's response from one shared step count")
        super().__init__(backbone, module, cfg)
        self.generator = None
        if cfg.seed is not None:
            self.generator = torch.Generator(device=backbone.device).manual_seed(cfg.seed)
        self.telemetry: list[RowTelemetry] = []
        self.steps: torch.Tensor | None = None
        """Per row: tokens picked so far."""
        self.logits: torch.Tensor | None = None
        self.token: torch.Tensor | None = None
        """The picked tokens while they await `advance`."""
        self.limits: torch.Tensor | None = None
        """Per row: the most tokens it may generate (for `fits`)."""
        self.window = sliding_window(backbone.model.config)
        self.cache = None
        self.hooks = None

    def __enter__(self) -> "ContinuousBatch":
        self._attach()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._detach()

    @property
    def size(self) -> int:
        return len(self.telemetry)

    @property
    def columns(self) -> int:
        """Cache columns (the same in every layer), 0 when empty."""
        return 0 if self.size == 0 else int(self.attn.shape[1])

    # -- joining -------------------------------------------------------------------------------------------------
    def fits(self, prompt_width: int, max_new_tokens: int) -> bool:
        """Whether prompts `prompt_width` columns wide (left-padded) that generate up to `max_new_tokens` may join
        without any row's cache span reaching the backbone's sliding window (always, without one, or when empty)."""
        if self.window is None or self.size == 0:
            return True
        # Columns after the join: the prompt region may widen, K bridge columns may be appended, then one column
        # per step for as long as the longest-lived row (running or joining) goes on.
        columns = self.columns + max(0, prompt_width - self.m_len) + self.k
        remaining = int((self.limits - self.steps).max())
        return columns + max(remaining, max_new_tokens) <= self.window

    @torch.inference_mode()
    def join(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
             paragraphs: list[list[list[int]]] | None = None, max_new_tokens: int | list[int] | None = None,
             opinions: torch.Tensor | None = None) -> None:
        """Add left-padded prompts as rows `size, size+1, ...` (see `GuidedDecoder.run` for `paragraphs` and
        `opinions`).
        `max_new_tokens` (per row, or one for all; default the config's) is only recorded, for `fits`: rows end
        when the caller makes them `leave`."""
        if self.token is not None:
            raise RuntimeError("join() between pick() and advance(): rows join only when every row has a token "
                               "pending")
        new = GuidedDecoder(self.backbone, self.module, self.cfg)
        new.hooks = self.hooks
        telemetry = [RowTelemetry() for _ in range(input_ids.shape[0])]
        lengths = new._begin(attention_mask, paragraphs, opinions)
        logits = new._prefill(input_ids, lengths, telemetry, self._gate_threshold())
        rows = input_ids.shape[0]
        steps = torch.zeros(rows, dtype=torch.long, device=input_ids.device)
        limit = self.cfg.max_new_tokens if max_new_tokens is None else max_new_tokens
        limits = torch.tensor(limit if isinstance(limit, list) else [limit] * rows, device=input_ids.device)
        if self.size == 0:
            self._adopt(new)
            self.logits, self.steps, self.limits = logits, steps, limits
        else:
            self._merge(new)
            self.logits = torch.cat([self.logits, logits])
            self.steps = torch.cat([self.steps, steps])
            self.limits = torch.cat([self.limits, limits])
        self.telemetry += telemetry

    _PER_ROW = ("lengths", "offset", "bridge_start", "has_bridge", "prompt_states", "prompt_mask")
    """Per-row state whose rows a join simply appends (the mask and Bridge Tokens need the layout, see `_merge`)."""
    _ROW_STATE = ("attn", "bridge", *_PER_ROW)

    def _adopt(self, new: GuidedDecoder) -> None:
        for name in (*self._ROW_STATE, "cache", "m_len", "bridge_cols", "observed"):
            setattr(self, name, getattr(new, name, None))

    def _merge(self, new: GuidedDecoder) -> None:
        """Put `new`'s freshly prefilled rows (cache: prompt, then its bridge columns if any) under the running
        ones, in the running layout."""
        running, joining = self.size, new.attn.shape[0]
        width = max(self.m_len, new.m_len)
        for state in (self, new):
            _pad_front(state, width - state.m_len)
        k = self.k
        if new.bridge_cols is not None and self.bridge_cols is None:
            # The running rows had no bridge: give them K masked columns where the joining rows' bridge will sit.
            kv = self.attn.shape[1]
            for layer in self.cache.layers:
                layer.keys, layer.values = (_grow(t, 2, kv + k) for t in (layer.keys, layer.values))
            self.attn = _grow(self.attn, 1, kv + k)
            self.bridge_cols = slice(kv, kv + k)
        kv = self.attn.shape[1]

        def widen(t: torch.Tensor, dim: int) -> torch.Tensor:
            """`new`'s tensor at the running width: its prompt columns, its bridge columns at the shared ones,
            zeros (masked) everywhere else."""
            out = _grow(t.narrow(dim, 0, width), dim, kv)
            if new.bridge_cols is not None:
                out.narrow(dim, self.bridge_cols.start, k).copy_(t.narrow(dim, new.bridge_cols.start, k))
            return out

        for mine, theirs in zip(self.cache.layers, new.cache.layers):
            mine.keys = torch.cat([mine.keys, widen(theirs.keys, 2)])
            mine.values = torch.cat([mine.values, widen(theirs.values, 2)])
        self.attn = torch.cat([self.attn, widen(new.attn, 1)])
        if self.bridge is not None or new.bridge is not None:
            self.bridge = torch.cat([_or_zeros(self.bridge, new.bridge, running),
                                     _or_zeros(new.bridge, self.bridge, joining)])
        for name in self._PER_ROW:
            if getattr(self, name, None) is not None:
                setattr(self, name, torch.cat([getattr(self, name), getattr(new, name)]))
        if self.observed is not None:  # the new rows are not due a refresh before the next observation
            self.observed = tuple(torch.cat([t, t.new_zeros((joining, *t.shape[1:]))]) for t in self.observed)

    # -- one step ------------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def pick(self) -> torch.Tensor:
        """Every row's next token `(size,)`."""
        if self.token is not None:
            raise RuntimeError("pick() twice without advance()")
        self.token = _pick(self.logits, self.cfg, self.generator)
        self.steps = self.steps + 1
        return self.token

    @torch.inference_mode()
    def advance(self) -> None:
        """Feed the picked tokens (of the rows still here) and compute every row's next logits."""
        if self.size == 0:  # every row left
            return
        if self.token is None:
            raise RuntimeError("advance() without pick()")
        token, self.token = self.token, None
        self.logits = self._advance(token, self.steps - 1, None, self.telemetry)

    @torch.inference_mode()
    def leave(self, rows: list[int]) -> list[RowTelemetry]:
        """Drop `rows` (indices as of now; later rows move up) and the cache columns nobody left can see; returns
        their telemetry."""
        gone = set(rows)
        if not gone:
            return []
        keep = [r for r in range(self.size) if r not in gone]
        left = [self.telemetry[r] for r in sorted(gone)]
        self.telemetry = [self.telemetry[r] for r in keep]
        if not keep:
            self.cache = self.logits = self.token = self.steps = self.limits = self.bridge = self.observed = None
            self.bridge_cols = None
            return left
        index = torch.tensor(keep, device=self.attn.device)
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[index], layer.values[index]
        for name in (*self._ROW_STATE, "logits", "token", "steps", "limits"):
            if getattr(self, name, None) is not None:
                setattr(self, name, getattr(self, name)[index])
        if self.observed is not None:
            self.observed = tuple(t[index] for t in self.observed)
        self._compact()
        return left

    def _compact(self) -> None:
        """Drop the cache columns every row masks (prompt padding and the responses of rows that left). The bridge
        columns stay: they are shared, and refreshes write into them."""
        seen = self.attn.bool().any(0)
        if self.bridge_cols is not None:
            seen[self.bridge_cols] = True
        if bool(seen.all()):
            return
        index = seen.nonzero().flatten()
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[:, :, index], layer.values[:, :, index]
        self.attn = self.attn[:, index]
        prompt = seen[: self.m_len]
        if getattr(self, "prompt_states", None) is not None:
            self.prompt_states, self.prompt_mask = self.prompt_states[:, prompt], self.prompt_mask[:, prompt]
        if self.bridge_cols is not None:
            start = int(seen[: self.bridge_cols.start].sum())
            self.bridge_cols = slice(start, start + self.k)
        self.m_len = int(prompt.sum())


def sliding_window(config: Any) -> int | None:
    """The sliding window of a backbone config that has sliding-window layers, else None."""
    if hasattr(config, "get_text_config"):
        config = config.get_text_config(decoder=True)
    window = getattr(config, "sliding_window", None)
    if not window or getattr(config, "use_sliding_window", True) is False:
        return None
    types = getattr(config, "layer_types", None)
    if types is not None and "sliding_attention" not in types:
        return None
    return int(window)


def _pad(t: torch.Tensor, dim: int, n: int, front: bool = False) -> torch.Tensor:
    """`t` with `n` zeros (masked columns) added along `dim`, after it or in front."""
    if n <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = n
    parts = [t.new_zeros(shape), t] if front else [t, t.new_zeros(shape)]
    return torch.cat(parts, dim)


def _grow(t: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """`t` with zeros appended along `dim` up to `size`."""
    return _pad(t, dim, size - t.shape[dim])


def _or_zeros(t: torch.Tensor | None, like: torch.Tensor, rows: int) -> torch.Tensor:
    return t if t is not None else like.new_zeros((rows, *like.shape[1:]))


def _pad_front(state: GuidedDecoder, n: int) -> None:
    """Left-pad a batch's cache, mask and prompt states by `n` masked columns, shifting its bridge columns."""
    if n <= 0:
        return
    for layer in state.cache.layers:
        layer.keys, layer.values = _pad(layer.keys, 2, n, front=True), _pad(layer.values, 2, n, front=True)
    state.attn = _pad(state.attn, 1, n, front=True)
    if getattr(state, "prompt_states", None) is not None:
        state.prompt_states = _pad(state.prompt_states, 1, n, front=True)
        state.prompt_mask = _pad(state.prompt_mask, 1, n, front=True)
    if state.bridge_cols is not None:
        state.bridge_cols = slice(state.bridge_cols.start + n, state.bridge_cols.stop + n)
    state.m_len += n
