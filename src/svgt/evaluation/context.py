"""The shared inputs every compared method prepares from: the same training data as SVGT, the tuning set, and the
backbone's own answers (already cached by `svgt train`)."""

from __future__ import annotations

from typing import Any, Sequence

from .. import data as svdata
from ..backbone import Backbone
from ..config import TrainConfig
from ..judges import is_refusal
from ..methods import MethodContext
from ..training.answers import backbone_answers
from ..training.trainer import augmented_texts, select_answered_prompts


def training_prompts(corpus: Any, cfg: TrainConfig) -> tuple[list[str], list[str]]:
    """`(harmful, benign)` training prompts for the compared methods: the corpus's stage-3 prompts plus every text
    `svgt train` writes from training data (imperative frames, constructed content requests; leak-checked there), so
    the baselines learn from the same data as the shipped module."""
    harmful = [p.prompt for p in corpus.stage3_harmful]
    benign = [p.prompt for p in corpus.stage3_benign]
    for x in augmented_texts(corpus, cfg):
        (harmful if x.label == 1 else benign).append(x.text)
    return harmful, benign


def build_context(backbone: Backbone, artifact: str | None = None, cfg: TrainConfig | None = None,
                  corpus: Any = None, margin: float | None = None,
                  gate_threshold: float | None = None, answers: bool = True, co_judge: bool = True) -> MethodContext:
    """Training prompts, tuning prompts (HarmBench val + the tuning half of held-out benign prompts) and extras.

    Extras: `artifact`, `margin`, `gate_threshold` (for svgt / svgt_inject; None: the artifact's) and `co_judge`
    (False: the module judges without the co-judge it names), and
    `heldout_benign` (whose evaluation half the over-refusal suite uses). With `answers` (for the methods whose
    `uses_backbone_answers` is set), also the backbone's answers to the prompts `svgt train` answered
    (`harmful_answers`, `benign_answers`: DPO's rejected / chosen sides, CAA's, ITI's and CAST's pairs) and
    `train_pairs` (RE-Control's value targets); cached on disk, but minutes of generation the first time.
    """
    cfg = cfg or TrainConfig()
    corpus = corpus or svdata.build_corpus(seed=cfg.seed, max_sharegpt=cfg.max_sharegpt)
    extras: dict[str, Any] = {
        "artifact": artifact,
        "margin": margin,
        "gate_threshold": gate_threshold,
        "co_judge": co_judge,
        "heldout_benign": [p.prompt for p in corpus.heldout_benign],
    }
    if answers:
        harmful, benign = select_answered_prompts(corpus, cfg)
        harmful_answers = dict(zip(harmful, backbone_answers(backbone, harmful, cfg.answer_tokens,
                                                             "answers (harmful)")))
        benign_answers = dict(zip(benign, backbone_answers(backbone, benign, cfg.answer_tokens, "answers (benign)")))
        train_pairs = [(p, a, "safe" if is_refusal(a) else "unsafe") for p, a in harmful_answers.items()]
        train_pairs += [(p, a, "safe") for p, a in benign_answers.items()]
        extras.update(harmful_answers=harmful_answers, benign_answers=benign_answers, train_pairs=train_pairs)
    train_harmful, train_benign = training_prompts(corpus, cfg)
    tune_harmful, tune_benign = svdata.tuning_prompts(corpus)
    return MethodContext(
        backbone=backbone,
        train_harmful=train_harmful,
        train_benign=train_benign,
        tune_harmful=tune_harmful,
        tune_benign=tune_benign,
        seed=cfg.seed,
        extras=extras,
    )


def chosen_settings(path: str, methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The settings an earlier run chose for those of `methods` it prepared, read from `path` (a run folder or its
    methods.jsonl), for `Method.chosen`. Raises naming the file when it is missing, is not JSON lines, or holds
    none of `methods`."""
    from pathlib import Path

    from ..data.userfiles import jsonl_rows

    file = Path(path) / "methods.jsonl" if Path(path).is_dir() else Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such file (expected an earlier `svgt eval` run's methods.jsonl)")
    found: dict[str, dict[str, Any]] = {}
    for _, row in jsonl_rows(file):
        if row.get("method") in methods:
            found[row["method"]] = row["params"]
    if not found:
        raise ValueError(f"{file}: no settings for {', '.join(methods)}")
    return found


def evaluate(methods: list[str], suites: list[str], out_dir: str, *, backbone: str | Backbone = "smollm2-135m-instruct",
             artifact: str | None = None, limit: int | None = None, max_new_tokens: int = 48, batch_size: int = 8,
             judge_path: str | None = None, judge_kind: str = "llamaguard", reference: str | None = None,
             margin: float | None = None, sweep_margins: Sequence[float] = (),
             gate_threshold: float | None = None, chosen: dict[str, dict[str, Any]] | None = None,
             co_judge: bool = True) -> str:
    """`svgt eval`: prepare each method on the shared context, run the suites, write results and the report.

    sweep_margins: svgt's margins to measure on the tuning set for the report's tuning search (`SVGTMethod`).
    chosen: per method, settings an earlier run chose (`chosen_settings`), taken instead of searching the tuning
    set (`Method.chosen`); the methods not in it search as usual."""
    from ..backbone import load_backbone
    from ..methods import make_method
    from .llm_judge import LLMJudge
    from .report import write_report
    from .runner import run_evaluation

    options: dict[str, dict[str, Any]] = {"svgt": {"sweep_margins": list(sweep_margins)}}
    made = {name: make_method(name, **options.get(name, {})) for name in methods}
    bb = load_backbone(backbone) if isinstance(backbone, str) else backbone
    ctx = build_context(bb, artifact, margin=margin, gate_threshold=gate_threshold, co_judge=co_judge,
                        answers=any(m.uses_backbone_answers for m in made.values()))
    judge = LLMJudge.from_pretrained(judge_path, judge_kind) if judge_path else None
    ref = load_backbone(reference, device=bb.device, dtype=bb.dtype) if reference else None
    for name, params in (chosen or {}).items():
        made[name].chosen = params
    run_evaluation(made, ctx, suites, out_dir, limit=limit, max_new_tokens=max_new_tokens, batch_size=batch_size,
                   judge=judge, reference=ref)
    from pathlib import Path

    return str(write_report(Path(out_dir) / "results.json", out_dir))
