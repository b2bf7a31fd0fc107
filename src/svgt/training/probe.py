"""A per-layer probe sweep: how well a linear probe on each layer's prompt state tells harmful requests from benign.

The value module reads one layer (the extract layer). Which layer holds intent rather than topic is a property of the
backbone, and cheap to measure: the last prompt token's state (where the first bridge is built) at every layer, a
logistic probe per layer, AUROC on prompts the probe never saw. Two probes per layer show what the data does: one
trained on the packaged sources alone, one with the constructed contrast twins added; both are scored on the
held-out contrast aims (only intent separates their twins) and on the tuning set's HarmBench val against its benign
columns. Tuning data only: no evaluation prompt is read.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..backbone import Backbone
from ..hooks import keep_logits, padded_positions
from ..prompts import encode_prompts
from .metrics import auroc


@torch.no_grad()
def last_token_states(backbone: Backbone, prompts: list[str], batch_size: int = 16,
                      max_prompt_tokens: int = 128, pool: str = "last") -> torch.Tensor:
    """`(layers, N, d)`: each decoder layer's output at the last prompt token, prompts templated as in generation
    (longer prompts are cut as in training: `prompts.keep_end`) at the positions generation gives them. Batches are
    length-sorted: left padding is wasted work. Only the last position's logits are computed: the states are what is
    read, and a batch's logits over a 262k-token vocabulary (Gemma) would cost more than its layers.
    `pool="mean"` averages each layer's output over the prompt's tokens (padding left out) instead."""
    if pool not in ("last", "mean"):
        raise ValueError(f"pool must be 'last' or 'mean', got {pool!r}")
    tok = backbone.tokenizer
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: torch.Tensor | None = None
    extra = keep_logits(backbone.model, 1)
    for start in tqdm(range(0, len(order), batch_size), desc="probe states", unit="batch", leave=False):
        idx = order[start : start + batch_size]
        ids, mask = encode_prompts(tok, [prompts[i] for i in idx], device=backbone.device,
                                   max_tokens=max_prompt_tokens)
        hidden = backbone.model(input_ids=ids, attention_mask=mask, position_ids=padded_positions(mask),
                                output_hidden_states=True, **extra).hidden_states
        if pool == "last":
            states = torch.stack([h[:, -1].float().cpu() for h in hidden[1:]])  # outputs of layers 0..L-1
        else:
            weights = (mask / mask.sum(1, keepdim=True)).float()[None, :, :, None]
            states = (torch.stack([h.float() for h in hidden[1:]]) * weights).sum(2).cpu()
        if out is None:
            out = torch.zeros(states.shape[0], len(prompts), states.shape[-1])
        out[:, idx] = states
    assert out is not None, "no prompts"
    return out


def fit_probe(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-2, steps: int = 100) -> Any:
    """Logistic regression on standardised features (full-batch L-BFGS); returns a scoring function."""
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    xs = (x - mean) / std
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")
    target = y.float()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xs @ w + b, target) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w, b = w.detach(), b.detach()
    return lambda z: ((z - mean) / std) @ w + b


def layer_sweep(backbone: Backbone, train: dict[str, tuple[list[str], list[int]]],
                test: dict[str, tuple[list[str], list[int]]], template: str = "{prompt}",
                pool: str = "last") -> dict[str, Any]:
    """For each training set in `train` and each layer, a probe's AUROC on each set in `test`:
    `{"layers": [...], "auroc": {train_name: {test_name: [per layer]}}, "n": {...}}`. Each prompt is read as
    `template.format(prompt=...)` (e.g. inside a question about it), pooled as `last_token_states` pools."""
    texts = list(dict.fromkeys(t for sets in (train, test) for ts, _ in sets.values() for t in ts))
    row = {t: i for i, t in enumerate(texts)}
    wrapped = template != "{prompt}"  # a wrapped prompt is longer: room for the template around a cut prompt
    states = last_token_states(backbone, [template.format(prompt=t) for t in texts],
                               max_prompt_tokens=256 if wrapped else 128, pool=pool)
    layers = list(range(states.shape[0]))
    result: dict[str, Any] = {"layers": layers, "auroc": {},
                              "n": {name: len(ts) for sets in (train, test) for name, (ts, _) in sets.items()}}
    for name, (ts, ys) in train.items():
        idx, y = torch.tensor([row[t] for t in ts]), torch.tensor(ys)
        result["auroc"][name] = {tname: [] for tname in test}
        for layer in layers:
            probe = fit_probe(states[layer, idx], y)
            for tname, (tts, tys) in test.items():
                scores = probe(states[layer, torch.tensor([row[t] for t in tts])])
                result["auroc"][name][tname].append(round(auroc(scores, torch.tensor(tys)), 4))
    return result


def sweep_sets(corpus: Any, heldout_contrast: list[Any], tuning: dict[str, list[str]], train_contrast: list[Any],
               per_class: int = 400, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sweep's training and test sets: packaged sources alone (`per_class` harmful and benign training prompts),
    sources plus the training contrast twins; tested on the held-out contrast twins and on HarmBench val against
    each benign tuning column."""
    rng = random.Random(seed)
    harmful = [x.text for x in corpus.texts if x.label == 1 and x.source in ("donotanswer", "tense_rewordings",
                                                                             "rho_pairs")]
    benign = [x.text for x in corpus.texts if x.label == 0 and len(x.text) <= 400]
    harmful, benign = rng.sample(harmful, min(per_class, len(harmful))), rng.sample(benign, min(per_class, len(benign)))
    sources = (harmful + benign, [1] * len(harmful) + [0] * len(benign))
    with_contrast = (sources[0] + [p.text for p in train_contrast], sources[1] + [p.label for p in train_contrast])
    train = {"sources": sources, "sources+contrast": with_contrast}
    test = {"heldout_contrast": ([p.text for p in heldout_contrast], [p.label for p in heldout_contrast])}
    for name, prompts in tuning.items():
        if name != "harmbench_val" and prompts:
            test[f"harmbench_val_vs_{name}"] = (tuning["harmbench_val"] + prompts,
                                                [1] * len(tuning["harmbench_val"]) + [0] * len(prompts))
    return train, test


def limit_sets(sets: dict[str, tuple[list[str], list[int]]], per_class: int) -> dict[str, tuple[list[str], list[int]]]:
    """Each set cut to its first `per_class` prompts of each label: a quick run that shows the sweep works on a
    backbone, not a measurement."""
    out: dict[str, tuple[list[str], list[int]]] = {}
    for name, (texts, labels) in sets.items():
        counts: dict[int, int] = {}
        keep: list[int] = []
        for i, y in enumerate(labels):
            if counts.get(y, 0) < per_class:
                counts[y] = counts.get(y, 0) + 1
                keep.append(i)
        out[name] = ([texts[i] for i in keep], [labels[i] for i in keep])
    return out


def plot_sweep(sweep: dict[str, Any], path: str | Path, extract_layer: int | None = None) -> None:
    """Probe AUROC per layer, one panel per test set, one line per training set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tests = list(next(iter(sweep["auroc"].values())))
    fig, axes = plt.subplots(1, len(tests), figsize=(4.2 * len(tests), 3.4), sharey=True, squeeze=False)
    for ax, tname in zip(axes[0], tests):
        for name, curves in sweep["auroc"].items():
            ax.plot(sweep["layers"], curves[tname], marker="o", ms=3, label=f"trained on {name}")
        if extract_layer is not None:
            ax.axvline(extract_layer, color="grey", ls=":", lw=1, label=f"extract layer {extract_layer}")
        ax.axhline(0.5, color="black", lw=0.5)
        ax.set_title(tname.replace("_", " "), fontsize=9)
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("probe AUROC (held out)")
    axes[0, 0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Linear probe on the last prompt token's state, per layer", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
