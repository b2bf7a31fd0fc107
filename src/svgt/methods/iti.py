"""`iti`: inference-time intervention (Li et al., 2023; as in honest_llama).

Per attention head, the head's output (its slice of the attention output projection's input) is read for two
classes. honest_llama reads it at the last token of a question followed by a true or a false answer; with
`contrast="responses"` (the default) the classes are likewise answers to the same harmful training prompt: a
refusal (positive) and the backbone's own complying answer (`svgt.methods.pairs`), read at the answer's last token
(at most 32). `contrast="prompts"` reads the last prompt token of harmful (positive) and benign training prompts
instead. A logistic-regression probe per head is fit on a train split and heads are ranked by validation accuracy.
For the top K heads, the shift is the mass-mean direction (mean positive - mean negative, normalised) times alpha
times the std of the activations along it; while steering it is added to those heads' slices at every position (a
pre-hook on the output projection). K and alpha are tuned.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F

from .base import Method, MethodContext
from .pairs import check_contrast, refusal_pairs
from .steering import (add_to_input, attached, attention_heads, attention_out_proj, choose, last_token_activations,
                       response_activations, subsample)


def rank_heads(acts: torch.Tensor, labels: torch.Tensor, seed: int = 0, val_fraction: float = 0.3,
               steps: int = 300, lr: float = 0.05, l2: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit one logistic probe per head on `acts` `(N, heads, d)` with binary `labels` `(N,)`; return the heads
    ordered best first (validation accuracy, ties broken by validation loss) and every head's validation accuracy.

    The split is stratified and seeded; all probes train together (full batch Adam, L2), from zero weights.
    """
    labels = labels.float()
    gen = torch.Generator().manual_seed(seed)
    train_idx, val_idx = [], []
    for cls in (0.0, 1.0):
        idx = (labels == cls).nonzero().flatten()
        if len(idx) < 2:
            raise ValueError("ITI needs at least two training prompts of each class")
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_val = min(len(idx) - 1, max(1, round(val_fraction * len(idx))))
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    tr, va = torch.cat(train_idx), torch.cat(val_idx)
    x = acts.float()
    mean, std = x[tr].mean(0), x[tr].std(0, unbiased=False) + 1e-6
    x = (x - mean) / std
    heads, dim = x.shape[1:]
    weight = torch.zeros(heads, dim, requires_grad=True)
    bias = torch.zeros(heads, requires_grad=True)
    opt = torch.optim.Adam([weight, bias], lr=lr)

    def logits(rows: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nkd,kd->nk", x[rows], weight) + bias

    y_tr = labels[tr, None].expand(-1, heads)
    with torch.enable_grad(), torch.inference_mode(False):
        for _ in range(steps):
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(logits(tr), y_tr, reduction="none").mean(0).sum()
            (loss + l2 * weight.pow(2).sum()).backward()
            opt.step()
    with torch.no_grad():
        val_logits = logits(va)
        y_va = labels[va, None].expand(-1, heads)
        accuracy = ((val_logits > 0).float() == y_va).float().mean(0)
        val_loss = F.binary_cross_entropy_with_logits(val_logits, y_va, reduction="none").mean(0)
    order = torch.sort(val_loss, stable=True).indices
    order = order[torch.sort(accuracy[order], descending=True, stable=True).indices]
    return order, accuracy


def mass_mean_shifts(acts: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per head `(heads, d)`: unit (mean positive - mean negative) direction times the std of activations along it."""
    acts, positive = acts.float(), labels.bool()
    direction = acts[positive].mean(0) - acts[~positive].mean(0)
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    std = torch.einsum("nkd,kd->nk", acts, direction).std(0)
    return direction * std[:, None]


class ITIMethod(Method):
    name = "iti"
    uses_backbone_answers = True

    def __init__(self, top_k: Sequence[int] = (8, 16, 32), alphas: Sequence[float] = (1.0, 2.5, 5.0, 10.0),
                 max_train: int = 256, val_fraction: float = 0.3, probe_steps: int = 300, tune_limit: int = 30,
                 tune_max_new_tokens: int = 24, batch_size: int = 16, contrast: str = "responses"):
        """Grid: `top_k` (capped at the number of heads) x `alphas`. honest_llama's α 15 (for 7B models) broke the
        default 135M backbone's text at every K on the tuning set (benign PPL 8-350x its own from α 5 up), hence the
        smaller values. `contrast`: see the module docstring."""
        super().__init__()
        self.contrast = check_contrast("iti", contrast)
        self.top_k, self.alphas = list(top_k), list(alphas)
        self.max_train, self.val_fraction, self.probe_steps = max_train, val_fraction, probe_steps
        self.tune_limit, self.tune_max_new_tokens, self.batch_size = tune_limit, tune_max_new_tokens, batch_size
        self.order: torch.Tensor | None = None
        self.accuracy: torch.Tensor | None = None
        self.shifts: torch.Tensor | None = None
        self.heads_per_layer = 0

    def prepare(self, ctx: MethodContext) -> dict[str, Any]:
        self.backbone = bb = ctx.backbone
        projs = [attention_out_proj(layer) for layer in bb.layers]
        self.heads_per_layer = n_heads = attention_heads(bb)
        if self.contrast == "responses":
            pairs = refusal_pairs(ctx, self.max_train, self.name)
            prompts = [p["prompt"] for p in pairs]
            per_module = [torch.cat(sides) for sides in zip(*(
                response_activations(bb, prompts, [p[side] for p in pairs], projs, reduce="last", inputs=True,
                                     batch_size=self.batch_size) for side in ("chosen", "rejected")))]
            n_pos = n_neg = len(pairs)
            counts = {"n_pairs": len(pairs)}
        else:
            harmful = subsample(ctx.train_harmful, self.max_train, ctx.seed)
            benign = subsample(ctx.train_benign, self.max_train, ctx.seed + 1)
            per_module = last_token_activations(bb, harmful + benign, projs, inputs=True, batch_size=self.batch_size)
            n_pos, n_neg = len(harmful), len(benign)
            counts = {"n_train_harmful": n_pos, "n_train_benign": n_neg}
        acts = torch.stack(per_module, 1)
        acts = acts.view(acts.shape[0], len(projs) * n_heads, -1)  # (N, layers * heads, head_dim)
        labels = torch.tensor([1] * n_pos + [0] * n_neg)
        self.order, self.accuracy = rank_heads(acts, labels, ctx.seed, self.val_fraction, self.probe_steps)
        self.shifts = mass_mean_shifts(acts, labels)
        ks = sorted({min(k, acts.shape[1]) for k in self.top_k})
        self.params = {"top_k": ks[0], "alpha": self.alphas[0]}
        grid = [{"top_k": k, "alpha": a} for k in ks for a in self.alphas]
        self.params, self.search = choose(self, grid, ctx, self.tune_limit, self.tune_max_new_tokens)
        chosen = self.order[: self.params["top_k"]]
        self.params["heads"] = [[int(i) // n_heads, int(i) % n_heads] for i in chosen]
        self.params["probe_val_accuracy"] = float(self.accuracy[chosen].mean())
        self.params.update(contrast=self.contrast, **counts)
        return self.params

    def layer_shifts(self) -> dict[int, torch.Tensor]:
        """Per intervened layer, the `(heads * head_dim,)` vector added to its output projection's input."""
        n_heads, alpha = self.heads_per_layer, float(self.params["alpha"])
        out: dict[int, torch.Tensor] = {}
        for index in self.order[: self.params["top_k"]].tolist():
            layer, head = divmod(index, n_heads)
            vec = out.setdefault(layer, torch.zeros(n_heads, self.shifts.shape[-1]))
            vec[head] = alpha * self.shifts[index]
        return {layer: vec.flatten() for layer, vec in out.items()}

    def steering(self):
        return self._steer()

    @contextmanager
    def _steer(self) -> Iterator[None]:
        bb = self.backbone
        regs = [lambda l=layer, v=vec.to(bb.device): add_to_input(attention_out_proj(bb.layers[l]), v)
                for layer, vec in self.layer_shifts().items()]
        with attached(*regs):
            yield
