"""`re_control`: representation editing by gradient ascent on a value function (Kong et al., 2024).

A small MLP value function V is trained on layer-l hidden states to predict the safety reward: +1 for a safe state,
-1 for an unsafe one. Training states: the last prompt token of each benign (+1) and harmful (-1) training prompt,
and, when `ctx.extras["train_pairs"]` is given, every response-token state of each labelled response.

While steering, at every forward (the prompt's prefill, then each decoding step) the newest position's layer-l
output is moved by `n_steps` of gradient ascent on V: h <- h + step_size * grad V(h). The ascent runs in V's input
units z = (h - mu) / s (mu the mean training state, s the RMS of the centred states), i.e. the paper's update with a
step size of step_size * s^2, so one grid fits backbones of any activation scale. Only V is differentiated.
Default layer: the last decoder layer, as in the paper (the state the LM head reads).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import Backbone
from ..prompts import left_pad
from ..training.activations import encode_pair
from .base import Method, MethodContext
from .steering import (attached, choose, hidden_of, last_token_activations, module_activations, subsample,
                       with_hidden)

_SAFE = {"safe", "refusal", "refuse", "chosen", "good", "harmless"}
_UNSAFE = {"unsafe", "harmful", "comply", "compliance", "rejected", "bad"}


class ValueFunction(nn.Module):
    """V(z), z = (h - mean) / scale: a two-hidden-layer GELU MLP to one scalar."""

    def __init__(self, dim: int, hidden: int, mean: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("scale", scale.float().reshape(()))
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(-1)

    def ascend(self, h: torch.Tensor, step_size: float, n_steps: int) -> torch.Tensor:
        """`h` `(B, d)` after `n_steps` of gradient ascent on V (works inside inference mode)."""
        if n_steps <= 0 or step_size == 0:
            return h
        with torch.inference_mode(False), torch.enable_grad():
            z = (h.float() - self.mean) / self.scale  # a fresh (non-inference) tensor
            for _ in range(n_steps):
                z = z.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(self(z).sum(), z)
                z = z + step_size * grad
            return (z.detach() * self.scale + self.mean).to(h.dtype)


def fit_value_function(states: torch.Tensor, targets: torch.Tensor, seed: int = 0, hidden: int = 256,
                       steps: int = 300, lr: float = 1e-3, batch: int = 512) -> ValueFunction:
    """Regress `targets` `(N,)` on `states` `(N, d)` with MSE (seeded init and minibatches); frozen on return."""
    states, targets = states.float(), targets.float()
    mean = states.mean(0)
    scale = (states - mean).pow(2).mean().sqrt().clamp_min(1e-6)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vf = ValueFunction(states.shape[1], hidden, mean, scale)
    gen = torch.Generator().manual_seed(seed)
    with torch.inference_mode(False), torch.enable_grad():
        z = ((states - mean) / scale).clone()
        opt = torch.optim.Adam(vf.net.parameters(), lr=lr, weight_decay=1e-4)
        for _ in range(steps):
            idx = torch.randperm(len(z), generator=gen)[:batch]
            opt.zero_grad()
            F.mse_loss(vf(z[idx]), targets[idx]).backward()
            opt.step()
    return vf.eval().requires_grad_(False)


def _reward(label: Any) -> float:
    if isinstance(label, str):
        key = label.strip().lower()
        if key in _SAFE or key in _UNSAFE:
            return 1.0 if key in _SAFE else -1.0
        raise ValueError(f"unknown train_pairs label {label!r}")
    if isinstance(label, bool):
        return 1.0 if label else -1.0
    return max(-1.0, min(1.0, float(label)))


def labelled_responses(pairs: Iterable[Any]) -> list[tuple[str, str, float]]:
    """`(prompt, response, reward)` from `train_pairs` items: `(prompt, response, label)` with label +1/-1, a bool
    (True = safe) or "safe"/"unsafe"; `(prompt, chosen, rejected)` strings; or dicts with the same keys."""
    out: list[tuple[str, str, float]] = []
    for item in pairs:
        if isinstance(item, dict):
            item = ((item["prompt"], item["chosen"], item["rejected"]) if "chosen" in item
                    else (item["prompt"], item["response"], item["label"]))
        prompt, first, second = item
        if isinstance(second, str) and second.strip().lower() not in _SAFE | _UNSAFE:
            out += [(prompt, first, 1.0), (prompt, second, -1.0)]
        else:
            out.append((prompt, first, _reward(second)))
    return out


def response_states(backbone: Backbone, items: list[tuple[str, str, float]], layer: int, batch_size: int = 16,
                    max_response: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer-`layer` outputs at every response token of each item `(n, d)`, with each token's reward `(n,)`."""
    states, rewards = [], []
    for start in range(0, len(items), batch_size):
        chunk = [(encode_pair(backbone, p, r, 512, max_response), y) for p, r, y in items[start : start + batch_size]]
        chunk = [(e, y) for e, y in chunk if e.response_ids]
        if not chunk:
            continue
        ids, mask = left_pad([e.prompt_ids + e.response_ids for e, _ in chunk], backbone.tokenizer.pad_token_id,
                             backbone.device)
        (out,) = module_activations(backbone, ids, mask, [backbone.layers[layer]])
        for row, (e, y) in enumerate(chunk):
            n = len(e.response_ids)
            states.append(out[row, -n:].float().cpu())
            rewards.append(torch.full((n,), y))
    if not states:
        return torch.zeros(0, backbone.hidden_size), torch.zeros(0)
    return torch.cat(states), torch.cat(rewards)


class REControlMethod(Method):
    name = "re_control"
    uses_backbone_answers = True

    def __init__(self, layer: int | None = None, step_sizes: Sequence[float] = (0.25, 0.5, 1.0),
                 n_steps: Sequence[int] = (10, 30), hidden: int = 256, train_steps: int = 300, lr: float = 1e-3,
                 max_train: int = 256, max_pairs: int = 256, tune_limit: int = 30, tune_max_new_tokens: int = 24,
                 batch_size: int = 16):
        """Grid: `step_sizes` x `n_steps`. `layer` None: the last decoder layer."""
        super().__init__()
        self.layer, self.step_sizes, self.n_steps = layer, list(step_sizes), list(n_steps)
        self.hidden, self.train_steps, self.lr = hidden, train_steps, lr
        self.max_train, self.max_pairs = max_train, max_pairs
        self.tune_limit, self.tune_max_new_tokens, self.batch_size = tune_limit, tune_max_new_tokens, batch_size
        self.value: ValueFunction | None = None

    def prepare(self, ctx: MethodContext) -> dict[str, Any]:
        self.backbone = bb = ctx.backbone
        layer = self.layer if self.layer is not None else bb.num_layers - 1
        harmful = subsample(ctx.train_harmful, self.max_train, ctx.seed)
        benign = subsample(ctx.train_benign, self.max_train, ctx.seed + 1)
        (prompt_states,) = last_token_activations(bb, harmful + benign, [bb.layers[layer]],
                                                  batch_size=self.batch_size)
        targets = torch.tensor([-1.0] * len(harmful) + [1.0] * len(benign))
        pairs = labelled_responses(ctx.extras.get("train_pairs") or [])
        if len(pairs) > self.max_pairs:
            pairs = [pairs[i] for i in sorted(torch.randperm(len(pairs), generator=torch.Generator().manual_seed(
                ctx.seed))[: self.max_pairs].tolist())]
        r_states, r_targets = response_states(bb, pairs, layer, self.batch_size)
        states, targets = torch.cat([prompt_states, r_states]), torch.cat([targets, r_targets])
        self.value = fit_value_function(states, targets, ctx.seed, self.hidden, self.train_steps, self.lr)
        with torch.no_grad():
            fit = float(((self.value((states - self.value.mean) / self.value.scale) > 0) == (targets > 0)).float()
                        .mean())
        self.value.to(bb.device)
        self.params = {"layer": layer, "step_size": self.step_sizes[0], "n_steps": self.n_steps[0],
                       "n_value_states": len(states), "value_train_accuracy": fit}
        grid = [{"step_size": s, "n_steps": n} for s in self.step_sizes for n in self.n_steps]
        self.params, self.search = choose(self, grid, ctx, self.tune_limit, self.tune_max_new_tokens)
        return self.params

    def steering(self):
        return self._steer()

    @contextmanager
    def _steer(self) -> Iterator[None]:
        step_size, n_steps, value = float(self.params["step_size"]), int(self.params["n_steps"]), self.value

        def hook(module: nn.Module, args: tuple, output: Any) -> Any:
            hidden = hidden_of(output)
            newest = value.ascend(hidden[:, -1], step_size, n_steps)
            return with_hidden(output, torch.cat([hidden[:, :-1], newest[:, None]], dim=1))

        with attached(lambda: self.backbone.layers[self.params["layer"]].register_forward_hook(hook)):
            yield
