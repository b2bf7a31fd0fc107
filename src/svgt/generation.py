"""Guided decoding with Bridge Tokens and a KV cache.

Cache layout (one column per token, the same in every layer): prompt `[0, M)` left-padded, Bridge Tokens
`[M, M+K)`, response from `M+K`. Positions are honest per row: prompt `0..m-1`, bridge `m..m+K-1`, response from
`m+K`. Layers below the insert layer see the bridge columns nowhere (they are masked for every query); the bridge
enters the residual stream at the insert layer's input.

The first response token is predicted at the last bridge position, so it is already guided. Every `r` tokens the
bridge is recomputed from the newest token's extract-layer state and blended with momentum; the new Bridge Tokens
ride along in the next token's forward (no extra pass):

- `fast` refresh: the K new bridge entries are computed at their honest positions (seeing only the prompt and each
  other) and written over the old bridge columns. Response entries already cached keep what they computed against
  the old bridge; they are stale by design and the mode is measured against `exact`.
- `exact` refresh: the cache is cut back to the prompt and the bridge plus every response token so far is
  recomputed, so the cache equals a full recomputation with the new bridge.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import torch

from .backbone import Backbone
from .config import GenerationConfig
from .hooks import (BackboneHooks, BridgeCache, ForwardPlan, HeadInput, IdleLinears, bridge_block, cache_keyword,
                    keep_logits, padded_positions, prompt_states)
from .module import ValueModule
from .prompts import encode_prompts, left_pad, part_ids
from .value_space import PromptMemory


@dataclass
class RowTelemetry:
    """Per generated token of one row, about the state it was predicted from: the discriminator score `s` of that
    extract-layer state (for the first token: the prompt's state, which built the first bridge), ‖Δz‖, and whether
    the bridge was refreshed in the forward that produced it. `bridge_score` is the first entry's `s`."""

    score: list[float] = field(default_factory=list)
    delta_z_norm: list[float] = field(default_factory=list)
    refreshed: list[bool] = field(default_factory=list)
    bridge_score: float | None = None
    bridged_at: int | None = None
    """Step from which the row had Bridge Tokens: 0 from the first token, None if never (the gate let the prompt
    through and no refresh inserted one; the answer is the backbone's own)."""

    def add(self, score: float, delta_z_norm: float, refreshed: bool) -> None:
        self.score.append(score)
        self.delta_z_norm.append(delta_z_norm)
        self.refreshed.append(refreshed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bridge_score": self.bridge_score,
            "bridged_at": self.bridged_at,
            "score": self.score,
            "delta_z_norm": self.delta_z_norm,
            "refreshed": self.refreshed,
        }


@dataclass
class GenerationResult:
    token_ids: list[list[int]]
    """Generated ids per row, cut before the first stop token, or after the last token that adds text before a stop
    string."""
    texts: list[str]
    """Per row, the text of its ids; cut before a stop string."""
    telemetry: list[RowTelemetry]
    finish_reasons: list[str]
    """`stop` (a stop token or stop string) or `length` (max_new_tokens)."""
    step_logits: list[torch.Tensor] = field(default_factory=list)
    """With `keep_logits=True`: the `(B, V)` logits each step sampled from."""
    step_bridges: list[torch.Tensor | None] = field(default_factory=list)
    """With `keep_logits=True`: the Bridge Tokens in force for each step's logits."""


def stop_token_ids(backbone: Backbone, extra: list[int] | None = None) -> set[int]:
    ids: set[int] = set(extra or [])
    for source in (getattr(backbone.model, "generation_config", None), backbone.tokenizer):
        eos = getattr(source, "eos_token_id", None)
        if isinstance(eos, int):
            ids.add(eos)
        elif isinstance(eos, (list, tuple)):
            ids.update(int(e) for e in eos)
    return ids


def stop_strings(backbone: Backbone, cfg: GenerationConfig) -> list[str]:
    """The strings a row stops at under `cfg`: its own, else the backbone's (`GenerationConfig.stop_strings`)."""
    if not cfg.stop_at_eos:
        return []
    return list(backbone.stop_strings if cfg.stop_strings is None else cfg.stop_strings)


def first_stop(text: str, stops: Sequence[str]) -> int:
    """Where the earliest of `stops` starts in `text`, or -1."""
    return min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)


def for_prompts(config: GenerationConfig, chat_template: bool) -> GenerationConfig:
    """`config` for prompts that are (`chat_template`) or are not run through the chat template. The backbone's stop
    strings end an answer in its prompt format, so a raw prompt does not stop at them (unless `config` names them)."""
    if chat_template or config.stop_strings is not None:
        return config
    return replace(config, stop_strings=[])


def _tokens_before(tokenizer: Any, ids: list[int], end: int) -> int:
    """How many of `ids` it takes for their text to reach `end` characters: the tokens that add text before a stop
    string (the one it starts inside included). Walks back from the end, where the stop string is."""
    n = len(ids)
    while n > 0 and len(tokenizer.decode(ids[: n - 1], skip_special_tokens=True)) >= end:
        n -= 1
    return n


def _pick(logits: torch.Tensor, cfg: GenerationConfig, generator: torch.Generator | None) -> torch.Tensor:
    if not cfg.do_sample:
        return logits.argmax(-1)
    logits = logits.float() / cfg.temperature
    if cfg.top_k:
        kth = torch.topk(logits, min(cfg.top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if cfg.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = torch.softmax(sorted_logits, -1).cumsum(-1)
        # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
        drop = (cum - torch.softmax(sorted_logits, -1)) >= cfg.top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    probs = torch.softmax(logits, -1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def encode_prompt(module: ValueModule, states: torch.Tensor,
                  mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(h_v, z)` of whole prompts: their pooled extract-layer `states` `(B, M, d)`, encoded against the prompt."""
    vs = module.judge
    h = vs.aggregator(states, mask)
    return h, vs.encode(h, states, mask)


def prompt_value(model: torch.nn.Module, hooks: BackboneHooks, module: ValueModule, states: torch.Tensor,
                 mask: torch.Tensor, paragraphs: list[list[list[int]]] | None = None, pad_id: int = 0,
                 chunk: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the `(h_v, z)` a prompt's first bridge is built from: its pooled extract-layer `states` encoded
    against the prompt. With `paragraphs` (token ids of each part of a prompt as a prompt of its own, per row: its
    paragraphs and last sentence, `prompts.part_ids`), whichever of the whole prompt and its parts scores most unsafe.
    `hooks` must be attached."""
    vs = module.judge
    h_v, z = encode_prompt(module, states, mask)
    flat = [(row, ids) for row, rows in enumerate(paragraphs or []) for ids in (rows or [])]
    if not flat:
        return h_v, z
    best = vs.score(z)
    for start in range(0, len(flat), chunk):
        part = flat[start : start + chunk]
        ids, pmask = left_pad([p for _, p in part], pad_id, h_v.device)
        m = pmask.bool()
        hv_p, z_p = encode_prompt(module, prompt_states(model, hooks, ids, pmask), m)
        s_p = vs.score(z_p)
        for j, (row, _) in enumerate(part):
            if s_p[j] > best[row]:
                best[row], h_v[row], z[row] = s_p[j], hv_p[j], z_p[j]
    return h_v, z


@torch.inference_mode()
def judge_prompts(backbone: Backbone, module: ValueModule, ids: torch.Tensor, mask: torch.Tensor,
                  paragraphs: list[list[list[int]]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`(h_v, z)` of a left-padded prompt batch as its first bridge reads it (`prompt_value`), from forwards that
    stop at the extract layer: a prompt's judgment without generating."""
    return _prompt_values(backbone, [module], ids, mask, [paragraphs])[0]


def _prompt_values(backbone: Backbone, modules: Sequence[ValueModule], ids: torch.Tensor, mask: torch.Tensor,
                   paragraphs: Sequence[list[list[list[int]]] | None]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`judge_prompts` of several modules (each with its own `paragraphs`) on one batch; modules that read the same
    layer share one forward up to it."""
    readers: dict[int, list[int]] = {}
    for i, module in enumerate(modules):
        readers.setdefault(module.config.extract_layer, []).append(i)
    out: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    pad_id = backbone.tokenizer.pad_token_id or 0
    for layer, members in readers.items():
        with BackboneHooks(backbone.layers, modules[members[0]].config.insert_layer, layer, None) as hooks:
            states = prompt_states(backbone.model, hooks, ids, mask)
            for i in members:
                out[i] = prompt_value(backbone.model, hooks, modules[i], states, mask.bool(), paragraphs[i], pad_id)
    return [out[i] for i in range(len(modules))]


@torch.inference_mode()
def first_bridge_judgments(backbone: Backbone, modules: Sequence[ValueModule],
                           prompts: list[str] | list[list[dict[str, str]]], config: GenerationConfig | None = None,
                           chat_template: bool = True) -> torch.Tensor:
    """`(len(modules), len(prompts))`: per module, the score `s` each prompt of one batch builds its first bridge
    from (what the gate compares with its threshold), as `GuidedDecoder` computes it, from forwards that stop at the
    extract layer. Modules that read the same layer share one forward: several modules judge a batch for about the
    cost of one, which is what comparing trained modules on the same prompts spends its time on. Of `config`, only
    what decides the score is read: which parts of a prompt are scored, and whether the co-judge is asked."""
    config = config or GenerationConfig()
    ids, mask = encode_prompts(backbone.tokenizer, prompts, chat_template, backbone.device)
    # Per module: which parts of a prompt it scores and its co-judge's opinions (the ids are the same for all).
    parts = [encode_batch(backbone, m, prompts, config, chat_template)[2:] for m in modules]
    values = _prompt_values(backbone, modules, ids, mask, [paragraphs for paragraphs, _ in parts])
    out = torch.empty(len(modules), len(prompts))
    for i, (module, (_, z), (_, opinions)) in enumerate(zip(modules, values, parts)):
        out[i] = module.judge.correction(z, opinions)[1].float().cpu()
    return out


_DIRECT_HEAD: weakref.WeakKeyDictionary[torch.nn.Module, bool] = weakref.WeakKeyDictionary()
"""Per model: whether its LM head, called on its input, gives the model's own logits to the bit (checked on the first
guided prompt forward; a model that scales or caps logits after the head, or computes them another way, keeps
computing them in the forward)."""


OnToken = Callable[[torch.Tensor, list[RowTelemetry]], bool]
"""Called with each step's picked tokens `(B,)` (finished rows get the pad id) and the rows' telemetry, which by then
holds entries for every token up to this one; return False to stop decoding after this token."""


class GuidedDecoder:
    """One batch of guided generation. Use `generate()` (or `svgt.SVGTModel`) unless you need the pieces.

    `on_token` (optional, see `OnToken`) sees every token as soon as it is picked, before the forward that feeds it
    back: what streaming (`svgt.streaming`, the server) is built on."""

    def __init__(self, backbone: Backbone, module: ValueModule | None, cfg: GenerationConfig,
                 on_token: OnToken | None = None) -> None:
        self.backbone = backbone
        self.on_token = on_token
        self.model = backbone.model
        self.module = module
        self.cfg = cfg
        self.guided = cfg.guidance and module is not None
        self.k = module.config.num_bridge_tokens if self.guided else 0
        self.keep_last = keep_logits(self.model, 1)  # once: the signature check is not free on every step
        self.cache_kwarg = cache_keyword(self.model)
        self.placeholder = backbone.tokenizer.pad_token_id or 0
        self.stop_strings = stop_strings(backbone, cfg)
        self.stopped_at: dict[int, int] = {}
        """Per row that a stop string ended: how many tokens it had then (the last one completed the string)."""
        self._memory: tuple[torch.Tensor, torch.Tensor, PromptMemory | list[PromptMemory]] | None = None
        """The prompt states and mask that `_prompt_memory` last projected, and its result."""

    # -- one forward ---------------------------------------------------------------------------------------------
    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, plan: ForwardPlan | None) -> torch.Tensor | None:
        """The last position's float logits `(B, V)`; None where a `HeadInput` skipped the head."""
        if self.hooks is not None:
            self.hooks.plan = plan
        try:
            out = self.model(
                input_ids=ids,
                attention_mask=self.attn,
                position_ids=positions,
                use_cache=True,
                **{self.cache_kwarg: self.cache},
                **self.keep_last,
            )
        finally:
            if self.hooks is not None:
                self.hooks.plan = None
        return out.logits[:, -1].float() if out.logits.shape[1] else None

    def _observe(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z, s, state) of the newest token's extract-layer state `(B, d)`. Δz (a gradient) is left to the caller:
        a gate only needs `s`, and most steps need nothing."""
        vs = self.module.judge
        if vs.training:  # dropout: the plain path
            z = vs.encode(state.float(), self.prompt_states, self.prompt_mask)
        else:
            z = vs.encode_step(state.float(), self._prompt_memory())
        return z, vs.score(z), state

    def _prompt_memory(self) -> PromptMemory | list[PromptMemory]:
        """The prompt side of the value module's cross-attention, projected once per set of prompts: rebuilt only
        when the prompt states change (a new batch, or rows that join or leave a continuous batch)."""
        memo = self._memory
        if memo is None or memo[0] is not self.prompt_states or memo[1] is not self.prompt_mask:
            memory = self.module.judge.prompt_memory(self.prompt_states, self.prompt_mask)
            self._memory = memo = (self.prompt_states, self.prompt_mask, memory)
        return memo[2]

    # -- the loop ------------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, keep_logits: bool = False,
            paragraphs: list[list[list[int]]] | None = None,
            opinions: torch.Tensor | None = None) -> GenerationResult:
        """`paragraphs`: per row, the token ids of each part of its prompt as a prompt of its own (`prompts.part_ids`),
        scored when `cfg.score_paragraphs` or `scores_last_sentence`; None or [] for a row scores only its prompt.
        `opinions`: per row, the module's co-judge's standardised score of the prompt (`co_judge_opinions`), averaged
        into the first bridge's score; None judges with the module alone."""
        cfg = self.cfg
        batch, device = input_ids.shape[0], input_ids.device
        generator = None
        if cfg.seed is not None:
            generator = torch.Generator(device=device).manual_seed(cfg.seed)
        lengths = self._begin(attention_mask, paragraphs, opinions)
        telemetry = [RowTelemetry() for _ in range(batch)]
        self.stopped_at = {}
        stops = stop_token_ids(self.backbone, cfg.extra_stop_token_ids) if cfg.stop_at_eos else set()
        self._attach()
        try:
            return self._loop(input_ids, lengths, telemetry, stops, generator, keep_logits)
        finally:
            self._detach()

    def _begin(self, attention_mask: torch.Tensor, paragraphs: list[list[list[int]]] | None,
               opinions: torch.Tensor | None = None) -> torch.Tensor:
        """A fresh cache for a batch of prompts with this mask (and these paragraphs, kept only where the config
        scores them, and the co-judge's opinions); returns the prompts' lengths, what `_prefill` takes."""
        scored = self.cfg.score_paragraphs or scores_last_sentence(self.cfg, self.module)
        self.paragraphs = paragraphs if scored else None
        self.opinions = opinions if self.guided and self.cfg.co_judge else None
        self.cache = BridgeCache()
        self.attn = attention_mask.long()
        return self.attn.sum(-1)

    def _attach(self) -> None:
        """Attach the hooks (guided runs only); `_detach` removes them and drops the cache."""
        self.hooks = None
        if self.guided:
            c = self.module.config
            attn_impl = getattr(self.model.config, "_attn_implementation", None)
            self.hooks = BackboneHooks(self.backbone.layers, c.insert_layer, c.extract_layer, attn_impl)
            self.hooks.__enter__()

    def _detach(self) -> None:
        if self.hooks is not None:
            self.hooks.__exit__(None, None, None)
            self.hooks = None
        self.cache = None

    def _gate_threshold(self) -> float | None:
        """The run's gate: the config's, else the module's (chosen on the tuning set), else none."""
        if self.cfg.gate_threshold is not None:
            return self.cfg.gate_threshold
        return None if self.module is None else self.module.config.gate_threshold

    def _insert_threshold(self, gate: float) -> float:
        t = self.cfg.refresh_insert_threshold
        return max(gate, 0.0) if t is None else t

    def _prefill(self, input_ids: torch.Tensor, lengths: torch.Tensor, telemetry: list[RowTelemetry],
                 threshold: float | None) -> torch.Tensor:
        """The setup forwards of a batch on a fresh cache: its prompts, then the first Bridge Tokens of every row the
        gate does not let through. Lays out the cache (module docstring) and the per-row state (offsets, Bridge Tokens
        if any row has them, which rows do); returns the logits of every row's first token."""
        cfg, k, (batch, m_len), device = self.cfg, self.k, input_ids.shape, input_ids.device
        # Cache columns of the Bridge Tokens: [M, M+K) once any row has a first bridge; None while no row has one.
        self.bridge_cols: slice | None = None
        # Per row: how far the response positions sit past the prompt (K once the row has a bridge before its
        # response), and the position of its first Bridge Token (after its prompt, or where a refresh inserted it).
        self.offset = torch.zeros(batch, dtype=torch.long, device=device)
        self.bridge_start = lengths.clone()
        has_bridge = torch.zeros(batch, dtype=torch.bool, device=device)
        logits, head = self._prompt_forward(input_ids)
        bridge = None
        if self.guided:
            self.prompt_states = self.hooks.captured.float()
            self.prompt_mask = self.attn.bool()
            h_v, z = prompt_value(self.model, self.hooks, self.module, self.prompt_states, self.prompt_mask,
                                  self.paragraphs, self.placeholder)
            delta_z, s = self.module.judge.correction(z, self.opinions)
            # The gate: a prompt scored at or below the threshold gets no bridge, so its answer is the backbone's own
            # (token for token, with nothing extra to compute) unless a refresh later finds the response unsafe.
            has_bridge = torch.ones_like(has_bridge) if threshold is None else s > threshold
            norms = delta_z.norm(dim=-1)
            for row in range(batch):
                telemetry[row].bridge_score = float(s[row])
                telemetry[row].bridged_at = 0 if k and bool(has_bridge[row]) else None
                if cfg.telemetry:
                    telemetry[row].add(float(s[row]), float(norms[row]), False)
            if logits is None and not bool(has_bridge.all()):
                logits = head.logits()  # a gated row is answered from its prompt: the head skipped there runs now
            if k and bool(has_bridge.any()):
                bridge = self.module.bridge(h_v, delta_z)
                self.bridge_cols = slice(m_len, m_len + k)
                # A gated row's bridge columns stay masked (as padding) for all its queries: it never sees them.
                self.attn = torch.cat([self.attn, has_bridge[:, None].long().expand(batch, k)], 1)
                ids = torch.full((batch, k), self.placeholder, device=device)
                positions = lengths[:, None] + torch.arange(k, device=device)
                plan = ForwardPlan(slice(0, k), bridge, bridge_block(k, m_len + k, self.bridge_cols, device))
                # Every row here is a Bridge Token: below the insert layer their work is masked and overwritten.
                with IdleLinears(self.backbone.layers[: self.module.config.insert_layer]):
                    bridged = self._forward(ids, positions, plan)
                # A gated row's first token is predicted from its prompt, exactly as without guidance.
                logits = bridged if logits is None else torch.where(has_bridge[:, None], bridged, logits)
                self.offset = has_bridge.long() * k
        self.lengths, self.m_len, self.bridge, self.has_bridge, self.observed = lengths, m_len, bridge, has_bridge, None
        return logits

    def _prompt_forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor | None, HeadInput | None]:
        """The prompts through every layer into the fresh cache: the last position's logits, or None with the
        `HeadInput` that kept the head's input instead of running it. A guided run skips the head there (a row the
        gate lets through gets its logits from the head afterwards) once this model's head has been seen to give,
        called directly, the logits the model gives: the first guided prompt forward on a model checks it."""
        positions = padded_positions(self.attn)
        if not (self.guided and self.k):
            return self._forward(input_ids, positions, ForwardPlan()), None
        direct = _DIRECT_HEAD.get(self.model)
        with HeadInput(self.model, skip=bool(direct)) as head:
            logits = self._forward(input_ids, positions, ForwardPlan())
        if direct is None:
            # A model whose forward never calls its head module keeps computing logits its own way.
            _DIRECT_HEAD[self.model] = (head.available and head.hidden is not None
                                        and torch.equal(head.logits(), logits))
        return logits, head

    def _loop(self, input_ids, lengths, telemetry, stops, generator, keep_logits) -> GenerationResult:
        cfg, batch, device = self.cfg, input_ids.shape[0], input_ids.device
        logits = self._prefill(input_ids, lengths, telemetry, self._gate_threshold())

        generated = torch.zeros(batch, 0, dtype=torch.long, device=device)
        finished = torch.zeros(batch, dtype=torch.bool, device=device)
        finish_reasons = ["length"] * batch
        step_logits: list[torch.Tensor] = []
        step_bridges: list[torch.Tensor | None] = []
        for step in range(cfg.max_new_tokens):
            if keep_logits:
                step_logits.append(logits.clone())
                step_bridges.append(None if self.bridge is None else self.bridge.clone())
            token = _pick(logits, cfg, generator)
            token = torch.where(finished, torch.full_like(token, self.placeholder), token)
            if stops:
                hit = torch.isin(token, torch.tensor(sorted(stops), device=device)) & ~finished
                for row in hit.nonzero().flatten().tolist():
                    finish_reasons[row] = "stop"
                finished |= hit
            generated = torch.cat([generated, token[:, None]], 1)
            if self.stop_strings:
                self._stop_at_strings(generated, finished, finish_reasons)
            if self.on_token is not None and not self.on_token(token, telemetry):
                break
            if bool(finished.all()) or step == cfg.max_new_tokens - 1:
                break
            logits = self._advance(token, torch.full_like(token, step), generated, telemetry)
        return self._result(generated, stops, telemetry, finish_reasons, step_logits, step_bridges)

    def _advance(self, token: torch.Tensor, steps: torch.Tensor, generated: torch.Tensor | None,
                 telemetry: list[RowTelemetry]) -> torch.Tensor:
        """Feed each row its newest `token`, the `steps[row]`-th of its response (from 0), and return the logits
        of the next. A row's bridge is refreshed when its own schedule says so (every `refresh_every` tokens of its
        response, gate permitting); `generated` (every row's tokens so far) is needed by `exact` refresh only."""
        cfg, k, batch, device = self.cfg, self.k, token.shape[0], token.device
        has_bridge, threshold = self.has_bridge, self._gate_threshold()
        renew = torch.zeros_like(has_bridge)
        if k > 0 and cfg.refresh_every > 0 and self.observed is not None:
            renew = (steps > 0) & (steps % cfg.refresh_every == 0)
        new_bridge, inserted = None, torch.zeros_like(has_bridge)
        if bool(renew.any()) and threshold is not None:
            # A bridged row is renewed while its response is not clearly safe; a gated row gets its first
            # bridge only once its response reads unsafe (`GenerationConfig.refresh_insert_threshold`).
            s_new = self.observed[1]
            renew &= torch.where(has_bridge, s_new > threshold, s_new > self._insert_threshold(threshold))
        refresh = bool(renew.any())  # else the gate (or the schedule) keeps every row as it is: a plain step
        if refresh:
            z_new, _, state_new = self.observed
            dz_new, _ = self.module.judge.correction(z_new)
            candidate = self.module.bridge(state_new, dz_new)
            old = candidate if self.bridge is None else self.bridge
            # A row without a bridge yet takes the new one whole: there is nothing to blend it with.
            blended = torch.where(has_bridge[:, None, None], cfg.momentum * old + (1.0 - cfg.momentum) * candidate,
                                  candidate)
            new_bridge = torch.where(renew[:, None, None], blended, old)
            inserted = renew & ~has_bridge
            for row in inserted.nonzero().flatten().tolist():
                telemetry[row].bridged_at = int(steps[row]) + 1
        position = self.lengths + self.offset + steps
        if refresh and cfg.refresh_mode == "exact":
            logits = self._exact_refresh(generated, self.lengths, self.m_len, new_bridge, has_bridge | inserted)
        elif refresh:
            logits = self._fast_refresh(token, position, self.lengths, self.m_len, new_bridge, has_bridge, inserted)
        else:
            self.attn = torch.cat([self.attn, self.attn.new_ones(batch, 1)], 1)
            kv = self.attn.shape[1]
            cols = self.bridge_cols
            plan = ForwardPlan(block_lower=bridge_block(1, kv, cols, device)) if cols is not None else ForwardPlan()
            logits = self._forward(token[:, None], position[:, None], plan)
        if refresh:
            self.bridge = new_bridge
            self.has_bridge = has_bridge | inserted
        # The value module runs only when someone reads it: telemetry, or a refresh at the next step.
        next_refreshes = k and cfg.refresh_every and bool(((steps + 1) % cfg.refresh_every == 0).any())
        if self.guided and (cfg.telemetry or next_refreshes):
            self.observed = self._observe(self.hooks.captured[:, -1].float())
            if cfg.telemetry:
                dz_t, s_t = self.module.judge.correction(self.observed[0])
                norms = dz_t.norm(dim=-1)
                changed = renew.tolist()  # per row: did its bridge change (the gate keeps some as they are)
                for row in range(batch):
                    telemetry[row].add(float(s_t[row]), float(norms[row]), bool(changed[row]))
        return logits

    def _stop_at_strings(self, generated: torch.Tensor, finished: torch.Tensor, finish_reasons: list[str]) -> None:
        """Finish (in place) each row whose text now contains a stop string."""
        decode = self.backbone.tokenizer.decode
        for row in (~finished).nonzero().flatten().tolist():
            if first_stop(decode(generated[row].tolist(), skip_special_tokens=True), self.stop_strings) >= 0:
                finished[row] = True
                finish_reasons[row] = "stop"
                self.stopped_at[row] = generated.shape[1]

    def _fast_refresh(self, token, position, lengths, m_len, new_bridge, has_bridge, inserted) -> torch.Tensor:
        """New bridge + next token in one forward; the new bridge entries then replace the old bridge columns.

        The bridge rows skip the layers below the insert layer (`ForwardPlan.lower_skip`): there they would only
        compute entries that every query masks and that the insert layer overwrites, yet at K + 1 rows instead of 1
        they are most of a refresh step's cost. Those layers' cache gets just the token's column.

        A row that had no bridge (`inserted`: the gate let its prompt through, and now its response looks unsafe)
        gets its Bridge Tokens at the positions after its response so far, and its token after them: it is inserted
        where it is, not back-dated to the prompt."""
        k, device = self.k, token.device
        self.bridge_start = torch.where(inserted, position, self.bridge_start)
        self.offset = self.offset + inserted.long() * k
        position = position + inserted.long() * k
        visible = (has_bridge | inserted).long()[:, None]
        if self.bridge_cols is None:
            return self._first_bridge_columns(token, position, m_len, new_bridge, visible)
        old_kv, ids, positions, upper = self._bridge_and_token(token, position, m_len, visible)
        old_cols, new_cols = self.bridge_cols, slice(old_kv, old_kv + k)
        lower = torch.zeros(1, 1, old_kv + 1, dtype=torch.bool, device=device)
        lower[..., old_cols] = True
        # Above the insert layer the new bridge is written over the old one's columns as it is computed.
        plan = ForwardPlan(slice(0, k), new_bridge, lower, upper, lower_skip=new_cols, upper_overwrite=old_cols)
        self.cache.overwrite = (self.module.config.insert_layer, old_cols)
        try:
            logits = self._forward(ids, positions, plan)
        finally:
            self.cache.overwrite = None
        self.attn = torch.cat([self.attn[:, : old_kv], self.attn[:, -1:]], 1)
        self.attn[:, old_cols] = visible
        # Keep only the token's state for the observer (the bridge rows' states are not tokens).
        self.hooks.captured = self.hooks.captured[:, -1:]
        return logits

    def _first_bridge_columns(self, token, position, m_len, new_bridge, visible) -> torch.Tensor:
        """The first Bridge Tokens of a batch whose every prompt the gate let through: the cache has no bridge
        columns yet, so they are appended in every layer (below the insert layer as masked placeholders, so that
        all layers keep the same columns) and stay where they are."""
        k = self.k
        old_kv, ids, positions, upper = self._bridge_and_token(token, position, m_len, visible)
        cols = slice(old_kv, old_kv + k)
        lower = bridge_block(k + 1, old_kv + k + 1, cols, token.device)
        logits = self._forward(ids, positions, ForwardPlan(slice(0, k), new_bridge, lower, upper))
        self.bridge_cols = cols
        self.hooks.captured = self.hooks.captured[:, -1:]
        return logits

    def _bridge_and_token(self, token, position, m_len, visible):
        """The inputs of a forward that computes K new Bridge Tokens and the next token together: the attention mask
        grown by the K new columns (`visible` per row) and the token's, `(old_kv, ids, positions, upper)` with
        `upper` the `(1, K + 1, kv)` block for layers from the insert layer up, in which the bridge queries see only
        the prompt and each other, as at their positions (`self.bridge_start`)."""
        k, batch, device = self.k, token.shape[0], token.device
        old_kv = self.attn.shape[1]
        self.attn = torch.cat([self.attn, visible.expand(batch, k), self.attn.new_ones(batch, 1)], 1)
        upper = torch.zeros(1, k + 1, old_kv + k + 1, dtype=torch.bool, device=device)
        upper[:, :k, m_len:old_kv] = True
        ids = torch.cat([torch.full((batch, k), self.placeholder, device=device), token[:, None]], 1)
        positions = torch.cat([self.bridge_start[:, None] + torch.arange(k, device=device), position[:, None]], 1)
        return old_kv, ids, positions, upper

    def _exact_refresh(self, generated, lengths, m_len, new_bridge, visible) -> torch.Tensor:
        """Cut the cache back to the prompt and recompute bridge + all response tokens with the new bridge. A row
        without a bridge (`visible` False) keeps its columns masked and its response at the positions it had."""
        k, device = self.k, generated.device
        batch, t = generated.shape
        for layer in self.cache.layers:
            layer.keys = layer.keys[:, :, :m_len]
            layer.values = layer.values[:, :, :m_len]
        self.attn = torch.cat([self.attn[:, :m_len], visible.long()[:, None].expand(batch, k),
                               self.attn.new_ones(batch, t)], 1)
        self.bridge_cols = slice(m_len, m_len + k)
        self.bridge_start = lengths.clone()
        self.offset = visible.long() * k
        kv = m_len + k + t
        ids = torch.cat([torch.full((batch, k), self.placeholder, device=device), generated], 1)
        steps = torch.arange(t, device=device)
        positions = torch.cat([lengths[:, None] + torch.arange(k, device=device),
                               (lengths + self.offset)[:, None] + steps], 1)
        plan = ForwardPlan(slice(0, k), new_bridge, bridge_block(k + t, kv, self.bridge_cols, device))
        return self._forward(ids, positions, plan)

    def _result(self, generated, stops, telemetry, finish_reasons, step_logits, step_bridges) -> GenerationResult:
        tokenizer = self.backbone.tokenizer
        rows: list[list[int]] = []
        texts: list[str] = []
        for row, ids in enumerate(generated.tolist()):
            cut = next((i for i, t in enumerate(ids) if t in stops), len(ids))
            text = tokenizer.decode(ids[:cut], skip_special_tokens=True)
            if row in self.stopped_at:  # the text ends before the stop string, as a streamed one does
                ids = ids[: self.stopped_at[row]]
                text = tokenizer.decode(ids, skip_special_tokens=True)
                end = first_stop(text, self.stop_strings)
                cut, text = _tokens_before(tokenizer, ids, end), text[:end]
            rows.append(ids[:cut])
            texts.append(text)
            tel = telemetry[row]
            tel.score, tel.delta_z_norm, tel.refreshed = tel.score[:cut], tel.delta_z_norm[:cut], tel.refreshed[:cut]
        return GenerationResult(rows, texts, telemetry, finish_reasons, step_logits, step_bridges)


def scores_last_sentence(config: GenerationConfig, module: ValueModule | None) -> bool:
    """Whether a run scores each prompt's last sentence for its first bridge: the config's setting, else the
    module's (its gate was chosen under it)."""
    if config.score_last_sentence is not None:
        return config.score_last_sentence
    return module is not None and module.config.score_last_sentence


def consults_co_judge(module: ValueModule | None, config: GenerationConfig) -> bool:
    """Whether a run with `config` asks `module`'s co-judge: guidance on, a module that names one, and
    `config.co_judge` not turned off."""
    return module is not None and bool(module.config.co_judge) and config.guidance and config.co_judge


def co_judge_opinions(module: ValueModule | None, prompts: list[str] | list[list[dict[str, str]]],
                      config: GenerationConfig, chat_template: bool = True) -> torch.Tensor | None:
    """The co-judge's standardised scores of `prompts` (`(B,)`, what `GuidedDecoder.run` takes as `opinions`), or
    None where no co-judge is consulted (`consults_co_judge`)."""
    if not consults_co_judge(module, config):
        return None
    if module.co_judge is None:
        raise RuntimeError(f"the value module names co-judge {module.config.co_judge!r} but none is attached: load "
                           "it with svgt.load_pretrained (or svgt.cojudge.attach_co_judge), or pass co_judge=False")
    return module.co_judge.opinions(prompts, chat_template, config.score_paragraphs)


def encode_batch(backbone: Backbone, module: ValueModule | None, prompts: list[str] | list[list[dict[str, str]]],
                 config: GenerationConfig, chat_template: bool = True,
                 ) -> tuple[torch.Tensor, torch.Tensor, list[list[list[int]]] | None, torch.Tensor | None]:
    """`(input_ids, attention_mask, paragraphs, opinions)` of one batch as `GuidedDecoder.run` takes them: the ids of
    the prompts' parts only where they will be scored (guidance on, a module, `config.score_paragraphs` or
    `scores_last_sentence`), and the co-judge's scores where there is one (`co_judge_opinions`)."""
    ids, mask = encode_prompts(backbone.tokenizer, prompts, chat_template, backbone.device)
    paragraphs = None
    last = scores_last_sentence(config, module)
    if (config.score_paragraphs or last) and config.guidance and module is not None:
        paragraphs = [part_ids(backbone.tokenizer, p, chat_template, config.score_paragraphs, last) for p in prompts]
    return ids, mask, paragraphs, co_judge_opinions(module, prompts, config, chat_template)


def generate(
    backbone: Backbone,
    module: ValueModule | None,
    prompts: list[str] | list[list[dict[str, str]]],
    config: GenerationConfig | None = None,
    *,
    chat_template: bool = True,
    batch_size: int = 8,
    keep_logits: bool = False,
) -> GenerationResult:
    """Generate for a list of prompts (strings or chat message lists), in batches, order preserved."""
    config = config or GenerationConfig()
    results: list[GenerationResult] = []
    config = for_prompts(config, chat_template)
    for start in range(0, len(prompts), batch_size):
        ids, mask, paragraphs, opinions = encode_batch(backbone, module, prompts[start : start + batch_size], config,
                                                       chat_template)
        results.append(GuidedDecoder(backbone, module, config).run(ids, mask, keep_logits, paragraphs, opinions))
    return GenerationResult(
        [r for res in results for r in res.token_ids],
        [t for res in results for t in res.texts],
        [t for res in results for t in res.telemetry],
        [f for res in results for f in res.finish_reasons],
        [x for res in results for x in res.step_logits],
        [x for res in results for x in res.step_bridges],
    )
