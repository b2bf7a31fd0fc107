"""The compared methods train on the same data as `svgt train`, constructed prompts included."""

import json

import pytest

from svgt.config import TrainConfig
from svgt.data import MissingSourceError, build_corpus, evaluation_texts, find_overlaps
from svgt.data.content_requests import content_requests
from svgt.data.contrast import contrast_prompts
from svgt.evaluation.context import chosen_settings, training_prompts


def test_baselines_see_the_constructed_prompts_svgt_trains_on():
    try:
        corpus = build_corpus(seed=0, max_sharegpt=300)
    except MissingSourceError as e:
        pytest.skip(str(e))
    cfg = TrainConfig(content_requests=2)
    harmful, benign = training_prompts(corpus, cfg)
    constructed_harmful, constructed_benign = content_requests(2, cfg.seed)
    assert set(constructed_harmful) <= set(harmful) and set(constructed_benign) <= set(benign)
    assert not set(constructed_harmful) & set(benign) and not set(constructed_benign) & set(harmful)
    assert {p.prompt for p in corpus.stage3_harmful} <= set(harmful)
    assert {p.prompt for p in corpus.stage3_benign} <= set(benign)
    assert len(harmful) > len(corpus.stage3_harmful) + len(constructed_harmful)  # imperative frames too
    assert find_overlaps(harmful + benign, evaluation_texts()) == []

    contrast = contrast_prompts(seed=cfg.seed).train
    assert {p.text for p in contrast if p.label} <= set(harmful)
    assert {p.text for p in contrast if not p.label} <= set(benign)

    plain, _ = training_prompts(corpus, TrainConfig(content_requests=0, augment_harmful=False, contrast=0))
    assert plain == [p.prompt for p in corpus.stage3_harmful]


def test_chosen_settings_reads_an_earlier_runs_choices_and_names_bad_files(tmp_path):
    rows = [{"method": "cast", "params": {"condition_layer": 3, "strength": 1.0}},
            {"method": "caa", "params": {"layer": 2, "multiplier": 0.5}}]
    (tmp_path / "methods.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    assert chosen_settings(str(tmp_path), ["cast", "caa", "iti"]) == {"cast": rows[0]["params"],
                                                                     "caa": rows[1]["params"]}
    assert chosen_settings(str(tmp_path / "methods.jsonl"), ["cast"]) == {"cast": rows[0]["params"]}
    with pytest.raises(ValueError, match="methods.jsonl: no settings for iti, none"):
        chosen_settings(str(tmp_path), ["iti", "none"])
    with pytest.raises(FileNotFoundError, match="missing/methods.jsonl"):
        chosen_settings(str(tmp_path / "missing" / "methods.jsonl"), ["cast"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.jsonl:2: invalid JSON"):
        chosen_settings(str(bad), ["cast"])


def test_the_backbones_answers_are_generated_only_when_asked(monkeypatch):
    # Minutes of generation on a fresh CPU machine: `svgt eval --methods none,svgt` must not pay for DPO's data.
    try:
        corpus = build_corpus(seed=0, max_sharegpt=300)
    except MissingSourceError as e:
        pytest.skip(str(e))
    import svgt.evaluation.context as context

    asked: list[str] = []

    def fake_answers(backbone, prompts, max_new_tokens, desc):
        asked.append(desc)
        return ["I can't help with that." if "harmful" in desc else "Sure."] * len(prompts)

    monkeypatch.setattr(context, "backbone_answers", fake_answers)
    ctx = context.build_context(None, corpus=corpus, answers=False)
    assert asked == [] and not {"harmful_answers", "benign_answers", "train_pairs"} & set(ctx.extras)
    assert ctx.extras["heldout_benign"] == [p.prompt for p in corpus.heldout_benign]
    ctx = context.build_context(None, corpus=corpus, answers=True)
    assert len(asked) == 2 and ctx.extras["harmful_answers"] and ctx.extras["benign_answers"]
    assert {label for _, _, label in ctx.extras["train_pairs"]} == {"safe"}  # every fake harmful answer refuses


def test_every_method_that_reads_the_backbones_answers_says_so():
    import importlib
    import inspect

    from svgt.methods import METHOD_NAMES, make_method

    for name in METHOD_NAMES:
        method = make_method(name)
        module = type(method).__module__
        # base.py defines the flag (and names the extras in its docs) and the two methods that prepare nothing
        source = "" if module == "svgt.methods.base" else inspect.getsource(importlib.import_module(module))
        reads = any(k in source for k in ("refusal_pairs(", "preference_pairs(", '"train_pairs"'))
        assert method.uses_backbone_answers == reads, name
