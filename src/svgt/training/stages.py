"""The three stages as data + trainable parameters + loss, each handed to the one loop in `loop.py`.

Each loss takes a global batch of item indices and computes on this process's slice of it
(`svgt.training.distributed.shard`: the whole batch in a single process), returning that slice's share of the
global batch's loss, so the shares of all processes sum to the single-process loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from ..backbone import Backbone
from ..config import TrainConfig
from ..hooks import BackboneHooks, bridged_continuation, bridged_forward, prompt_prefix
from ..hooks import prompt_states as prompt_states_of
from ..module import ValueModule
from ..prompts import left_pad
from . import distributed
from .activations import EncodedPair, StateSet
from .loop import LoopSpec
from .metrics import binary_metrics


def _pad(seqs: list[torch.Tensor], left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack `(n_i, d)` tensors into `(B, n_max, d)` (fp32) and a bool mask."""
    n_max = max(1, max(s.shape[0] for s in seqs))
    d = seqs[0].shape[-1]
    out = torch.zeros(len(seqs), n_max, d)
    mask = torch.zeros(len(seqs), n_max, dtype=torch.bool)
    for i, s in enumerate(seqs):
        n = s.shape[0]
        if n:
            sl = slice(n_max - n, n_max) if left else slice(0, n)
            out[i, sl] = s.float()
            mask[i, sl] = True
    return out, mask


def _batches(n: int, size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=gen)
    for start in range(0, n, size):
        yield order[start : start + size]


@dataclass
class StateData:
    """Cached states plus labels; `response_states` empty for standalone texts."""

    states: StateSet
    labels: torch.Tensor
    twins: torch.Tensor | None = None
    """`(P, 2)` indices of contrast twin pairs among the items, harmful first (`TrainConfig.twin_ranking`)."""

    def batch(self, idx: torch.Tensor, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Padded fp32 states of items `idx` on `device` (the cache keeps them in `storage_dtype` on the CPU)."""
        p, pm = _pad([self.states.prompt_states[i] for i in idx], left=True)
        # A standalone text is scored at its last token, like a prompt at bridge time.
        resp = [self.states.response_states[i] if self.states.response_states[i].shape[0]
                else self.states.prompt_states[i][-1:] for i in idx]
        r, rm = _pad(resp, left=False)
        out = {"prompt": p, "prompt_mask": pm, "response": r, "response_mask": rm, "label": self.labels[idx].float()}
        return {k: v.to(device) for k, v in out.items()}


def _device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def _pos_weight(labels: torch.Tensor) -> torch.Tensor:
    pos = labels.float().sum().clamp(min=1)
    return ((labels.numel() - pos) / pos).clamp(0.2, 5.0)


TWIN_BATCH, TWIN_MARGIN = 32, 2.0
"""Twin pairs drawn per step for `TrainConfig.twin_ranking`, and the score gap asked between the twins."""


def _twin_ranking(data: StateData, idx: torch.Tensor, weight: float, device: torch.device,
                  score: Callable[[dict[str, torch.Tensor]], torch.Tensor]) -> torch.Tensor | float:
    """`weight` x the mean of softplus(s_benign - s_harmful + TWIN_MARGIN) over TWIN_BATCH twin pairs, 0 without.

    The pairs are drawn from the step's global batch `idx`, so every process draws the same ones (each adds the same
    term to its share of the loss, and the shares sum to one) and a resumed run draws what an uninterrupted one did."""
    if not weight or data.twins is None or not len(data.twins):
        return 0.0
    seed = int((idx.long() * torch.arange(1, len(idx) + 1)).sum())
    pick = data.twins[torch.randint(len(data.twins), (TWIN_BATCH,), generator=torch.Generator().manual_seed(seed))]
    harmful, benign = (score(data.batch(pick[:, j], device)) for j in (0, 1))
    return weight * F.softplus(benign - harmful + TWIN_MARGIN).mean()


def _mean_over(s: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.float()
    return (s * m).sum(1) / m.sum(1)


def _token_scores(module: ValueModule, b: dict[str, torch.Tensor], conditional: bool = True) -> torch.Tensor:
    """`(B, T)` per-token scores of a batch's responses (or of its standalone texts' last tokens)."""
    return module.score(b["response"], b["prompt"], b["prompt_mask"], conditional=conditional)


def _pair_score(module: ValueModule, b: dict[str, torch.Tensor], conditional: bool = True) -> torch.Tensor:
    """`(B,)`: each item's per-token scores averaged over its response."""
    return _mean_over(_token_scores(module, b, conditional), b["response_mask"])


def pair_scores(module: ValueModule, data: StateData, conditional: bool, batch_size: int = 64) -> torch.Tensor:
    """One score per item: the mean of the per-token scores of its response (or of its last token)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(data.labels), batch_size):
            b = data.batch(torch.arange(start, min(start + batch_size, len(data.labels))), _device(module))
            out.append(_pair_score(module, b, conditional))
    return torch.cat(out).cpu()


def stage1_spec(module: ValueModule, texts: StateData, heldout: StateData, cfg: TrainConfig) -> LoopSpec:
    vs = module.value_space
    pos_weight = _pos_weight(texts.labels).to(_device(module))

    def score(b: dict[str, torch.Tensor]) -> torch.Tensor:
        return module.score_sequence(b["prompt"], b["prompt_mask"])

    def loss(idx: torch.Tensor):
        mine = distributed.shard(idx)
        if not len(mine):
            return None, {}
        b = texts.batch(mine, _device(module))
        bce = F.binary_cross_entropy_with_logits(score(b), b["label"], pos_weight=pos_weight)
        bce = bce + _twin_ranking(texts, idx, cfg.twin_ranking, _device(module), score)
        return distributed.share(bce, len(mine), len(idx)), {}

    return LoopSpec(
        name="stage1",
        param_groups=[{"params": vs.unconditional_parameters(), "lr": cfg.stage1_lr}],
        batches=lambda gen: _batches(len(texts.labels), cfg.stage1_batch, gen),
        loss=loss,
        epochs=cfg.stage1_epochs,
        validate=lambda: binary_metrics(pair_scores(module, heldout, conditional=False), heldout.labels),
        seed=cfg.training_seed,
    )


def stage2_spec(module: ValueModule, pairs: StateData, heldout: StateData, cfg: TrainConfig) -> LoopSpec:
    vs = module.value_space
    pos_weight = _pos_weight(pairs.labels).to(_device(module))

    def loss(idx: torch.Tensor):
        mine = distributed.shard(idx)
        if not len(mine):
            return None, {}
        b = pairs.batch(mine, _device(module))
        s = _token_scores(module, b)
        target = b["label"][:, None].expand_as(s)
        per_token = F.binary_cross_entropy_with_logits(s, target, pos_weight=pos_weight, reduction="none")
        loss = _mean_over(per_token, b["response_mask"]).mean() + _twin_ranking(
            pairs, idx, cfg.twin_ranking, _device(module), lambda t: _pair_score(module, t))
        return distributed.share(loss, len(mine), len(idx)), {}

    return LoopSpec(
        name="stage2",
        param_groups=[
            {"params": vs.conditional_parameters(), "lr": cfg.stage2_lr_new},
            {"params": vs.unconditional_parameters(), "lr": cfg.stage2_lr_old},
        ],
        batches=lambda gen: _batches(len(pairs.labels), cfg.stage2_batch, gen),
        loss=loss,
        epochs=cfg.stage2_epochs,
        validate=lambda: binary_metrics(pair_scores(module, heldout, conditional=True), heldout.labels),
        seed=cfg.training_seed,
    )


class Stage3Batcher:
    """Teacher-forced batches `[prompt ; Bridge Tokens ; target]` with the bridge built from the prompt's state."""

    def __init__(self, backbone: Backbone, module: ValueModule, examples: list[EncodedPair], cfg: TrainConfig,
                 prefix_cache: bool = True):
        """`prefix_cache=False` runs each step as one full forward over `[prompt ; bridge ; target]` with every
        position's logits (`bridged_forward`, the reference generation is checked against): slower, the same loss and
        gradient, kept to check and time the default against (tests, `benchmarks/stage3_step.py`)."""
        self.backbone, self.module, self.examples, self.cfg = backbone, module, examples, cfg
        self.prefix_cache = prefix_cache
        c = module.config
        if c.num_bridge_tokens < 1:
            raise ValueError("stage 3 trains the Bridge Tokens, and num_bridge_tokens is 0: set it to 1 or more")
        self.hooks = BackboneHooks(backbone.layers, c.insert_layer, c.extract_layer, None)
        self.pad = backbone.tokenizer.pad_token_id or 0

    def tensors(self, idx: torch.Tensor):
        ex = [self.examples[i] for i in idx]
        p_ids, p_mask = left_pad([e.prompt_ids for e in ex], self.pad, self.backbone.device)
        t_max = max(len(e.response_ids) for e in ex)
        t_ids = torch.full((len(ex), t_max), self.pad, dtype=torch.long, device=self.backbone.device)
        t_mask = torch.zeros_like(t_ids)
        for row, e in enumerate(ex):
            t_ids[row, : len(e.response_ids)] = torch.tensor(e.response_ids)
            t_mask[row, : len(e.response_ids)] = 1
        return p_ids, p_mask, t_ids, t_mask

    METRICS = ("ce", "safe", "reg", "s_mean")

    def loss(self, idx: torch.Tensor) -> tuple[torch.Tensor | None, dict[str, float]]:
        """This process's share of the batch's loss: CE, the safety term and `s_mean` are means over the batch's
        target tokens, the regulariser a mean over its items."""
        cfg, module, hooks = self.cfg, self.module, self.hooks
        mine = distributed.shard(idx)
        if not len(mine):
            return None, dict.fromkeys(self.METRICS, 0.0)
        tokens = sum(len(self.examples[i].response_ids) for i in idx)
        p_ids, p_mask, t_ids, t_mask = self.tensors(mine)
        t = t_ids.shape[1]
        model = self.backbone.model
        with hooks:
            if self.prefix_cache:
                # Pass 1 (no grad): the prompt through every layer into a KV cache, with its extract-layer states (the
                # trigger state). Nothing after the prompt changes what its positions compute: pass 2 starts there.
                prompt_states, prefix = prompt_prefix(model, hooks, p_ids, p_mask)
            else:
                prompt_states = prompt_states_of(model, hooks, p_ids, p_mask)
            h = module.value_space.aggregator(prompt_states, p_mask.bool())
            bridge = module.make_bridge(h, prompt_states, p_mask.bool()).tokens
            # Pass 2: the guided, teacher-forced target; gradients reach only the bridge. By default only
            # [bridge ; target] runs, and only the logits that predict the target are computed: on a 262k vocabulary
            # (Gemma) the rest cost more than the layers.
            if self.prefix_cache:
                out = bridged_continuation(model, hooks, prefix, p_mask, bridge, t_ids, t_mask, self.pad,
                                           logits_to_keep=t + 1)
            else:
                out = bridged_forward(model, hooks, p_ids, p_mask, bridge, t_ids, t_mask, self.pad)
            # The target's extract-layer states, which the bridge influences (it enters at or below that layer).
            states = hooks.captured[:, -t:].float()
        logits = out.logits[:, -(t + 1) : -1].float()  # the same slice whether or not the model honours the keyword
        mask = t_mask.bool()
        n_tokens = int(mask.sum())
        ce = distributed.share(F.cross_entropy(logits[mask], t_ids[mask]), n_tokens, tokens)
        s = module.score(states, prompt_states, p_mask.bool())
        safe_terms = F.softplus(s) + cfg.safe_relu_weight * F.relu(s)
        safe = distributed.share((safe_terms * mask).sum() / mask.sum(), n_tokens, tokens)
        ratio = bridge.norm(dim=-1) / (h.norm(dim=-1, keepdim=True) * module.config.bridge_scale)
        reg = distributed.share(F.relu((ratio - 1).abs() - cfg.reg_tau).mean(), len(mine), len(idx))
        loss = cfg.lambda_ce * ce + cfg.lambda_safe * safe + cfg.lambda_reg * reg
        s_mean = distributed.share(s[mask].mean(), n_tokens, tokens)
        return loss, {"ce": ce.item(), "safe": safe.item(), "reg": reg.item(), "s_mean": s_mean.item()}


def stage3_spec(batcher: Stage3Batcher, heldout_idx: torch.Tensor, train_idx: torch.Tensor,
                cfg: TrainConfig) -> LoopSpec:
    module = batcher.module

    def batches(gen: torch.Generator):
        order = train_idx[torch.randperm(len(train_idx), generator=gen)]
        for start in range(0, len(order), cfg.stage3_batch):
            yield order[start : start + cfg.stage3_batch]

    def validate() -> dict[str, float]:
        losses = [distributed.sum_values(batcher.loss(heldout_idx[i : i + cfg.stage3_batch])[1], _device(module))
                  for i in range(0, len(heldout_idx), cfg.stage3_batch)]
        return {k: sum(d[k] for d in losses) / len(losses) for k in losses[0]} if losses else {}

    return LoopSpec(
        name="stage3",
        param_groups=[{"params": list(module.bridge.parameters()), "lr": cfg.stage3_lr}],
        batches=batches,
        loss=batcher.loss,
        epochs=cfg.stage3_epochs,
        validate=validate,
        weight_decay=0.0,
        seed=cfg.training_seed,
    )
