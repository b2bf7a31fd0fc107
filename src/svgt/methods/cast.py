"""`cast`: conditional activation steering (Lee et al., ICLR 2025, arXiv 2409.05907).

CAST adds a refusal *behavior vector* only to prompts whose hidden state matches a *condition vector*; every other
prompt is answered by the plain backbone. It is the one published steering method that, like svgt's gate, decides
per prompt whether to intervene, so it is the peer svgt's selectivity has to beat.

- **Condition vector** `c_l` per candidate layer: the first principal component of the token-averaged prompt states
  (every token of the chat-templated prompt) of harmful and benign training prompts, mean-centred together (the
  paper's "pca_center"), oriented so harmful prompts project higher.
- **Condition check**: `sim(h, tanh(proj_c h))`, the cosine similarity between the prompt's token-averaged state `h`
  at the condition layer and the tanh of its projection on `c` (the paper's form), compared with a threshold theta
  in a chosen direction (`>` or `<`: a layer may hold the condition either way).
- **Behavior vector** `v_l` per layer: the first principal component of the states averaged over a refusal and
  over the backbone's own complying answer after the same harmful training prompt (the contrast CAA steers along,
  `svgt.methods.pairs`), mean-centred, oriented toward refusal, and scaled by the mean refusal-minus-answer gap
  along it, so that strength 1 adds about the average gap. (The paper leaves the unit vector's scale to alpha; the
  scale here makes one strength grid fit backbones of any activation size.) When the condition is met,
  `alpha * v_l` is added to the output of every layer in the chosen window, at every position.

The condition is decided on the prompt alone, in a forward that stops at the condition layer, before generating:
prompts that meet it are generated under the behavior hooks and the rest without them, each group in its own
batches. So an unmet prompt's answer is the plain backbone's, token for token, and a met prompt's is the
unconditionally steered one. That makes the tuning search cheap: each behavior setting (window x strength) is
generated once on the tuning prompts, the plain backbone once, and every condition setting (layer x direction x
theta) is composed from those runs and the prompts' similarities. The whole grid is chosen by the rule and fluency
guard every baseline uses (`svgt.methods.tuning`), with PPL composed from per-answer NLLs.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from ..backbone import Backbone
from ..evaluation.fluency import perplexity_of, response_nll
from ..judges import refusal_rate
from .base import Method, MethodContext, MethodOutput
from .pairs import refusal_pairs
from .steering import (add_to_output, attached, depth_candidates, mean_prompt_activations, response_activations,
                       subsample)
from .tuning import conclude, remembered, reuse

CHOICE = ("condition_layer", "direction", "threshold", "window", "strength")
"""The settings CAST's search chooses (the rest of its params are counts and what follows from these)."""


def pca_direction(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Unit first principal component of `positive` and `negative` `(N, d)` rows mean-centred together, signed so
    that the positive rows project higher on average."""
    both = torch.cat([positive, negative]).double()
    centred = both - both.mean(0)
    direction = torch.linalg.svd(centred, full_matrices=False).Vh[0]
    if (positive.double() @ direction).mean() < (negative.double() @ direction).mean():
        direction = -direction
    return direction.float()


def condition_similarity(states: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
    """`sim(h, tanh(proj_c h))` per row of `states` `(N, d)`: cosine similarity between each state and the tanh of
    its projection on `condition`."""
    states, c = states.double(), condition.double()
    projected = torch.tanh((states @ c / (c @ c))[:, None] * c[None, :])
    return torch.nn.functional.cosine_similarity(states, projected, dim=-1).float()


def condition_met(similarity: torch.Tensor, threshold: float, direction: str) -> torch.Tensor:
    """Boolean per row: the similarity passes `threshold` in `direction` ('>' or '<')."""
    if direction not in (">", "<"):
        raise ValueError(f"direction must be '>' or '<', got {direction!r}")
    return similarity > threshold if direction == ">" else similarity < threshold


def best_split(positive: torch.Tensor, negative: torch.Tensor) -> dict[str, Any]:
    """The paper's grid search at one layer: the threshold (a midpoint between neighbouring similarities) and
    direction whose condition best separates `positive` from `negative` similarities by F1 on the positive class;
    ties go to the earlier threshold, `>` first."""
    values = torch.cat([positive, negative]).sort().values
    cuts = ((values[1:] + values[:-1]) / 2).tolist() or values.tolist()
    best = {"f1": -1.0}
    for direction in (">", "<"):
        for cut in cuts:
            tp = int(condition_met(positive, cut, direction).sum())
            fp = int(condition_met(negative, cut, direction).sum())
            f1 = 2 * tp / (2 * tp + fp + (len(positive) - tp))
            if f1 > best["f1"]:
                best = {"direction": direction, "threshold": round(cut, 5), "f1": round(f1, 4)}
    return best


def behavior_vectors(backbone: Backbone, pairs: list[dict[str, str]], layers: Sequence[int],
                     batch_size: int = 16) -> dict[int, torch.Tensor]:
    """Per layer, the refusal behavior vector from `pairs` (`chosen` a refusal, `rejected` the backbone's answer):
    the first principal component of the response-averaged states, scaled by the mean chosen-minus-rejected gap
    along it (float32, CPU)."""
    modules = [backbone.layers[i] for i in layers]
    prompts = [p["prompt"] for p in pairs]
    refusing, answering = (response_activations(backbone, prompts, [p[side] for p in pairs], modules,
                                                batch_size=batch_size) for side in ("chosen", "rejected"))
    out = {}
    for layer, r, a in zip(layers, refusing, answering):
        u = pca_direction(r, a)
        out[layer] = u * float(((r - a) @ u).mean())
    return out


class CASTMethod(Method):
    name = "cast"
    uses_backbone_answers = True

    def __init__(self, condition_layers: Sequence[int] | None = None,
                 quantiles: Sequence[float] = (0.2, 0.35, 0.5, 0.65, 0.8),
                 windows: Sequence[tuple[float, float]] = ((1 / 3, 1 / 2), (1 / 2, 2 / 3)),
                 strengths: Sequence[float] = (0.25, 0.5, 1.0, 2.0), max_train: int = 256, tune_limit: int = 30,
                 tune_max_new_tokens: int = 24, batch_size: int = 16):
        """`condition_layers`: where the condition may be checked (default: 1/6, 1/3, 1/2, 2/3 of depth).
        Thresholds per layer: the one that best separates the training prompts (`best_split`, the paper's grid
        search) and, in both directions, the given `quantiles` of the training prompts' similarities.
        `windows`: candidate behavior layer ranges as fractions of depth `[start, end)`. `strengths`: candidate
        alphas. The grid is conditions x windows x strengths (352 candidates by default, composed from 8 steered
        runs). With `chosen` set (`Method.chosen`), `prepare` builds only the chosen layer's condition and window's
        behavior vectors and skips the search (half an hour on a 2-core CPU)."""
        super().__init__()
        self.condition_layers = list(condition_layers) if condition_layers is not None else None
        self.quantiles = list(quantiles)
        self.windows = [tuple(w) for w in windows]
        self.strengths = list(strengths)
        self.max_train = max_train
        self.tune_limit, self.tune_max_new_tokens, self.batch_size = tune_limit, tune_max_new_tokens, batch_size
        self.conditions: dict[int, torch.Tensor] = {}
        self.behaviors: dict[int, torch.Tensor] = {}
        self.splits: dict[int, dict[str, Any]] = {}
        """Per condition layer, the training prompts' best split (`best_split`): the paper's choice of threshold."""
        self.last_met: list[bool] = []
        """Which prompts of the latest `generate` call met the condition."""

    # ---- fitting -------------------------------------------------------------------------------------------------

    def window_layers(self, window: Sequence[float]) -> list[int]:
        n = self.backbone.num_layers
        start, end = round(window[0] * n), round(window[1] * n)
        return list(range(max(0, start), min(n, max(end, start + 1))))

    def prepare(self, ctx: MethodContext) -> dict[str, Any]:
        self.backbone = bb = ctx.backbone
        layers = self.condition_layers or depth_candidates(bb.num_layers, (1 / 6, 1 / 3, 1 / 2, 2 / 3))
        windows = self.windows
        if self.chosen is not None:
            reuse(self, CHOICE)  # checks the earlier choice has every setting before any forward
            layers, windows = [int(self.chosen["condition_layer"])], [tuple(self.chosen["window"])]
        harmful = subsample(ctx.train_harmful, self.max_train, ctx.seed)
        benign = subsample(ctx.train_benign, self.max_train, ctx.seed + 1)
        modules = [bb.layers[i] for i in layers]
        acts_h = mean_prompt_activations(bb, harmful, modules, batch_size=self.batch_size)
        acts_b = mean_prompt_activations(bb, benign, modules, batch_size=self.batch_size)
        conditions: list[dict[str, Any]] = []
        for layer, h, b in zip(layers, acts_h, acts_b):
            self.conditions[layer] = c = pca_direction(h, b)
            sim_h, sim_b = condition_similarity(h, c), condition_similarity(b, c)
            # The paper's own point (best training F1), then both directions at quantiles of the training sims.
            self.splits[layer] = best_split(sim_h, sim_b)
            conditions.append({"condition_layer": layer, "direction": self.splits[layer]["direction"],
                               "threshold": self.splits[layer]["threshold"]})
            quantiles = torch.quantile(torch.cat([sim_h, sim_b]), torch.tensor(self.quantiles, dtype=torch.float))
            conditions += [{"condition_layer": layer, "direction": d, "threshold": round(float(t), 5)}
                           for d in (">", "<") for t in quantiles]
        behavior_layers = sorted({i for w in windows for i in self.window_layers(w)})
        pairs = refusal_pairs(ctx, self.max_train, self.name)
        self.behaviors = behavior_vectors(bb, pairs, behavior_layers, self.batch_size)
        behaviors = [{"window": list(w), "strength": a} for w in windows for a in self.strengths]
        self.params = {**conditions[0], **behaviors[0], "n_train_harmful": len(harmful),
                       "n_train_benign": len(benign), "n_pairs": len(pairs)}
        if self.chosen is not None:
            self.params, self.search = reuse(self, CHOICE), []
        else:
            self.params, self.search = self._tune(ctx, conditions, behaviors)
        self.params["behavior_layers"] = self.window_layers(self.params["window"])
        self.params["train_f1"] = self.splits[self.params["condition_layer"]]["f1"]
        return self.params

    def _tune(self, ctx: MethodContext, conditions: list[dict[str, Any]],
              behaviors: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Every condition x behavior candidate on the tuning set, composed from one plain and one steered run per
        behavior setting (see the module docstring), then the shared rule."""
        harmful, benign = ctx.tune_harmful[: self.tune_limit], ctx.tune_benign[: self.tune_limit]
        prompts = harmful + benign
        base = dict(self.params)

        def answers(steer: bool) -> tuple[list[str], list[tuple[float, int]]]:
            # Each run is kept in the evaluation's tuning log as soon as it is done (JSON: the NLL rows come back as
            # lists), so a restarted search repeats none that finished.
            def run() -> list[Any]:
                texts = self.answer(prompts, self.tune_max_new_tokens, batch_size=8 if steer else 16,
                                    steer=steer).texts
                return [texts, response_nll(self.backbone, benign, texts[len(harmful):])]

            what = {"run": "cast steered" if steer else "cast plain", "limit": self.tune_limit,
                    "max_new_tokens": self.tune_max_new_tokens}
            texts, nll = remembered(ctx, self, what, run)
            return texts, [(float(s), int(n)) for s, n in nll]

        plain_texts, plain_nll = answers(steer=False)
        steered: list[tuple[list[str], list[tuple[float, int]]]] = []
        try:
            for behavior in tqdm(behaviors, desc="cast: tuning (steered runs)", unit="setting", leave=False):
                self.params = {**base, **behavior}
                steered.append(answers(steer=True))
        finally:
            self.params = base
        layers = sorted({c["condition_layer"] for c in conditions})
        states = mean_prompt_activations(self.backbone, prompts, [self.backbone.layers[i] for i in layers],
                                         batch_size=self.batch_size)
        sims = {layer: condition_similarity(a, self.conditions[layer]) for layer, a in zip(layers, states)}
        reference = _ppl(plain_nll)
        table = []
        for condition in conditions:
            met = condition_met(sims[condition["condition_layer"]], condition["threshold"], condition["direction"])
            for behavior, (texts, nll) in zip(behaviors, steered):
                composed = [s if m else p for s, p, m in zip(texts, plain_texts, met.tolist())]
                b_nll = [nll[i] if met[len(harmful) + i] else plain_nll[i] for i in range(len(benign))]
                table.append({"params": {**condition, **behavior},
                              "tune_refusal": refusal_rate(composed[: len(harmful)]),
                              "tune_overrefusal": refusal_rate(composed[len(harmful):]),
                              "tune_met_harmful": float(met[: len(harmful)].float().mean()),
                              "tune_met_benign": float(met[len(harmful):].float().mean()),
                              "tune_ppl": _ppl(b_nll), "tune_ppl_unguided": reference,
                              "n_harmful": len(harmful), "n_benign": len(benign),
                              "max_new_tokens": self.tune_max_new_tokens, "chosen": False})
        return conclude(self, table)

    # ---- answering -----------------------------------------------------------------------------------------------

    def condition(self, prompts: list[str]) -> torch.Tensor:
        """Whether each prompt meets the chosen condition (a forward that stops at the condition layer)."""
        layer = self.params["condition_layer"]
        (acts,) = mean_prompt_activations(self.backbone, prompts, [self.backbone.layers[layer]],
                                          batch_size=self.batch_size)
        sims = condition_similarity(acts, self.conditions[layer])
        return condition_met(sims, float(self.params["threshold"]), self.params["direction"])

    @contextmanager
    def steering(self) -> Iterator[None]:
        """The behavior hooks, unconditionally (`generate` applies them to the prompts that meet the condition)."""
        alpha = float(self.params["strength"])
        layers = self.window_layers(self.params["window"])
        device = self.backbone.device
        regs = [lambda i=i: add_to_output(self.backbone.layers[i], (alpha * self.behaviors[i]).to(device))
                for i in layers]
        with attached(*regs):
            yield

    def generate(self, prompts: list[str], max_new_tokens: int, batch_size: int = 8) -> MethodOutput:
        """Greedy answers: steered where the condition is met, the plain backbone's elsewhere (order kept)."""
        assert self.backbone is not None, f"{self.name}: prepare() first"
        start = time.perf_counter()
        met = self.condition(prompts).tolist() if prompts else []
        texts: list[str] = [""] * len(prompts)
        tokens: list[int] = [0] * len(prompts)
        for steer in (True, False):
            idx = [i for i, m in enumerate(met) if m == steer]
            if idx:
                out = self.answer([prompts[i] for i in idx], max_new_tokens, batch_size, steer=steer)
                for i, text, n in zip(idx, out.texts, out.new_tokens):
                    texts[i], tokens[i] = text, n
        self.last_met = met
        return MethodOutput(texts, tokens, time.perf_counter() - start)



def _ppl(rows: list[tuple[float, int]]) -> float | None:
    """`perplexity_of` the rows, None (a search row's "not measured") where no answer has a token."""
    value = perplexity_of(rows)
    return None if math.isnan(value) else value
