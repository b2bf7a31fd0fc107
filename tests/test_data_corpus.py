"""The training corpus: leak-free against every evaluation/tuning text, deterministic, held-out sets disjoint."""

import pytest

from svgt.data.roles import RESERVE_SHAREGPT

from svgt.data import MissingSourceError, PairExample, build_corpus, evaluation_texts, find_overlaps, normalize


@pytest.fixture(scope="module")
def corpus():
    try:
        return build_corpus(seed=0, max_sharegpt=300, reserve_sharegpt=RESERVE_SHAREGPT)
    except MissingSourceError as e:
        pytest.skip(str(e))


def _training_texts(c):
    return (
        [t.text for t in c.texts]
        + [p.prompt for p in c.pairs]
        + [p.prompt for p in c.stage3_harmful]
        + [p.prompt for p in c.stage3_benign]
    )


def test_no_overlap_with_evaluation_texts(corpus):
    references = evaluation_texts()
    assert len(references) > 500
    held = corpus.heldout_benign + corpus.heldout_pairs + corpus.heldout_edgy + corpus.reserve_benign
    everything = _training_texts(corpus) + [p.prompt for p in held]
    assert find_overlaps(everything, references) == []
    assert corpus.report["leak_removed"].get("tense_rewordings", 0) > 50  # JailbreakBench rewordings of HarmBench


def test_lists_and_labels(corpus):
    labels = {t.source: set() for t in corpus.texts}
    for t in corpus.texts:
        labels[t.source].add(t.label)
    assert labels["donotanswer"] == {0, 1} and labels["sharegpt"] == {0} and labels["toxigen"] == {0, 1}
    assert {p.label for p in corpus.stage3_harmful} == {1} and {p.label for p in corpus.stage3_benign} == {0}
    assert {p.label for p in corpus.heldout_benign} == {0}
    refusal = [p for p in corpus.pairs if p.source.endswith("+refusal")]
    assert refusal and {p.label for p in refusal} == {0}
    assert {p.label for p in corpus.pairs if p.source == "rho_pairs"} == {0, 1}
    assert all(len(p.response) <= 600 for p in corpus.pairs if p.source == "sharegpt")
    assert len({normalize(t.text) for t in corpus.texts}) == len(corpus.texts)


def test_heldout_sets_never_in_training(corpus):
    training = {normalize(t) for t in _training_texts(corpus)}
    assert corpus.heldout_benign and not any(normalize(p.prompt) in training for p in corpus.heldout_benign)
    assert corpus.heldout_pairs and not any(normalize(p.prompt) in training for p in corpus.heldout_pairs)
    n_pairs = len(corpus.pairs) + len(corpus.heldout_pairs)
    assert 0.10 <= len(corpus.heldout_pairs) / n_pairs <= 0.20
    assert {p.label for p in corpus.heldout_pairs} == {0, 1}
    assert corpus.heldout_edgy and not any(normalize(p.prompt) in training for p in corpus.heldout_edgy)
    assert {p.label for p in corpus.heldout_edgy} == {0}


def test_sharegpt_reserve_is_short_answered_and_in_no_other_list(corpus):
    from svgt.data import sharegpt
    from svgt.data.roles import RESERVE_PROMPT_CHARS
    from svgt.judges import is_refusal

    reserve = corpus.reserve_benign
    first = {p.prompt for p in sharegpt(limit=300)}
    assert len(reserve) > 1000 and not {p.prompt for p in reserve} & first  # read after max_sharegpt
    assert {(p.label, p.source) for p in reserve} == {(0, "sharegpt_reserve")}
    assert all(len(p.prompt) <= RESERVE_PROMPT_CHARS and not is_refusal(p.response) for p in reserve)
    elsewhere = {normalize(t) for t in _training_texts(corpus)}
    elsewhere |= {normalize(p.prompt) for p in corpus.heldout_benign + corpus.heldout_pairs + corpus.heldout_edgy}
    assert not any(normalize(p.prompt) in elsewhere for p in reserve)
    assert find_overlaps([p.prompt for p in reserve], [p.prompt for p in corpus.heldout_benign]) == []
    skipped = corpus.report["skipped"]
    assert skipped["reserve_chatgpt_refused"] > 50 and skipped["reserve_long_prompt"] > 500
    assert build_corpus(seed=0, max_sharegpt=300).reserve_benign == []  # read only when asked for


def test_donotanswer_advice_is_benign_and_partly_held_out_for_tuning(corpus):
    from svgt.data import donotanswer, edgy_tuning_prompts

    advice = {p.prompt for p in donotanswer() if p.label == 0}
    trained = [t for t in corpus.texts if t.text in advice]
    assert trained and {t.label for t in trained} == {0}
    assert not advice & {p.prompt for p in corpus.stage3_harmful + corpus.pairs}  # neither refused nor "unsafe"
    held = {p.prompt for p in corpus.heldout_edgy}
    assert held <= advice and abs(len(held) - len(advice) / 3) <= 2
    assert held <= set(edgy_tuning_prompts(corpus))


def test_deterministic_and_reported(corpus):
    again = build_corpus(seed=0, max_sharegpt=300, reserve_sharegpt=RESERVE_SHAREGPT)
    assert again.report["fingerprints"] == corpus.report["fingerprints"]
    assert again.texts == corpus.texts and again.heldout_pairs == corpus.heldout_pairs
    other = build_corpus(seed=1, max_sharegpt=300, reserve_sharegpt=RESERVE_SHAREGPT)
    assert other.report["fingerprints"]["heldout_pairs"] != corpus.report["fingerprints"]["heldout_pairs"]
    report = corpus.report
    assert {"counts", "leak_removed", "skipped", "fingerprints", "loaded", "roles"} <= set(report)
    assert report["counts"]["texts"]["donotanswer"][1] == len(corpus.stage3_harmful) - sum(  # no advice prompts
        1 for p in corpus.stage3_harmful if p.source != "donotanswer"
    )


def test_hooks_benign_filter_and_extra_pairs():
    def flag_code(prompts):
        return ["code" in p.lower() for p in prompts]

    def extra(harmful):
        return [PairExample(h.prompt, "Sure, here is how.", 1, "backbone") for h in harmful[:20]]

    c = build_corpus(seed=0, max_sharegpt=300, benign_filter=flag_code, extra_pairs=extra)
    assert c.report["skipped"]["sharegpt_benign_filter"] > 0
    assert not any("code" in p.prompt.lower() for p in c.heldout_benign + c.stage3_benign if p.source == "sharegpt")
    backbone = [p for p in c.pairs + c.heldout_pairs if p.source == "backbone"]
    assert len(backbone) == 20
    with pytest.raises(ValueError, match="benign_filter returned"):
        build_corpus(max_sharegpt=50, benign_filter=lambda prompts: [False])


def test_default_corpus_is_the_one_svgt_train_splits():
    # A different default would shift the held-out ShareGPT split, so a caller of build_corpus() (the over-refusal
    # suite without extras) would evaluate on prompts the trained module was trained on.
    import inspect

    from svgt.config import TrainConfig

    defaults = inspect.signature(build_corpus).parameters
    assert defaults["max_sharegpt"].default == TrainConfig().max_sharegpt
    assert defaults["seed"].default == TrainConfig().seed
