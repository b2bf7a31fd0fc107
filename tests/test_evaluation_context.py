"""The compared methods train on the same data as `svgt train`, constructed prompts included."""

import pytest

from svgt.config import TrainConfig
from svgt.data import MissingSourceError, build_corpus, evaluation_texts, find_overlaps
from svgt.data.content_requests import content_requests
from svgt.data.contrast import contrast_prompts
from svgt.evaluation.context import training_prompts


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
