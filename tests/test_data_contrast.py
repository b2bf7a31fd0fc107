"""Constructed contrast pairs: twins that differ only in intent, whole aims held out, clear of every tuning and
evaluation prompt."""

import re

import pytest

from svgt.data import evaluation_texts, find_overlaps
from svgt.data.contrast import (BATCHES, CATEGORIES, DEFAULT_BATCHES, FRAMED_TEMPLATES, PAIRS, PLAIN_TEMPLATES,
                                STANDALONE_TEMPLATES, batch_pairs, contrast_prompts, heldout_aims, heldout_count,
                                twin_pairs)


def test_every_category_has_many_distinct_pairs():
    assert len(CATEGORIES) >= 10
    aims = [aim for pairs in PAIRS.values() for pair in pairs for aim in pair]
    assert len(aims) == len(set(aims)) and sum(len(p) for p in PAIRS.values()) >= 150
    for category, pairs in PAIRS.items():
        assert len(pairs) >= 10, category
        for benign, harmful in pairs:
            for aim in (benign, harmful):
                assert aim[:1] == aim[:1].lower() and aim[-1] not in ".?!", aim


def test_twins_share_their_template_and_held_out_aims_are_whole():
    data = contrast_prompts(seed=0, batches=len(BATCHES))
    held = heldout_aims(seed=0, batches=len(BATCHES))
    for side, expect_held in ((data.train, False), (data.heldout, True)):
        assert len(side) % 2 == 0
        for benign, harmful in zip(side[0::2], side[1::2]):
            assert (benign.label, harmful.label) == (0, 1)
            assert (benign.category, benign.aim) == (harmful.category, harmful.aim)
            assert (benign.aim in held[benign.category]) == expect_held
            b_aim, h_aim = PAIRS[benign.category][benign.aim]
            cap = lambda a: a[:1].upper() + a[1:]  # noqa: E731
            assert benign.text.replace(b_aim, "#").replace(cap(b_aim), "#") == \
                harmful.text.replace(h_aim, "#").replace(cap(h_aim), "#")  # same template around each aim
    for category in PAIRS:
        assert len(held[category]) == sum(heldout_count(len(batch.get(category, ()))) for batch in BATCHES)
    templates = {p.text.replace(PAIRS[p.category][p.aim][p.label], "{aim}") for p in data.train}
    assert len(templates) > 8  # plain, framed and standalone templates all in use
    assert len(data.train) == 6 * sum(len(p) - len(held[c]) for c, p in PAIRS.items())


def test_twin_pairs_put_each_harmful_twin_beside_its_benign_twin_and_refuse_anything_else():
    train = contrast_prompts(seed=0).train
    by_text = {p.text: p for p in train}
    pairs = twin_pairs(train)
    assert len(pairs) == len(train) // 2
    for harmful, benign in pairs:
        h, b = by_text[harmful], by_text[benign]
        assert (h.label, b.label) == (1, 0) and (h.category, h.aim) == (b.category, b.aim)
    with pytest.raises(ValueError, match="not a twin pair"):
        twin_pairs(train[1:3])  # a harmful twin, then the next template's benign one: the wrong way round


def test_a_later_batch_of_aims_moves_no_earlier_aim_between_training_and_tuning():
    assert len(BATCHES) > 2 and all(BATCHES)
    for batches in range(1, len(BATCHES)):
        before, after = heldout_aims(seed=0, batches=batches), heldout_aims(seed=0, batches=batches + 1)
        for category, pairs in batch_pairs(batches + 1).items():
            n = len(batch_pairs(batches).get(category, ()))
            assert {i for i in after[category] if i < n} == before.get(category, set())
            later = [i for i in after[category] if i >= n]
            assert len(later) == heldout_count(len(pairs) - n)  # the later batch is held out on its own


def test_training_reads_the_first_two_batches_unless_told_otherwise():
    """The shipped modules were trained on two batches: the default must not change under them."""
    assert contrast_prompts(seed=0) == contrast_prompts(seed=0, batches=DEFAULT_BATCHES) and DEFAULT_BATCHES == 2
    two, three = contrast_prompts(seed=0), contrast_prompts(seed=0, batches=3)
    assert set(two.train) < set(three.train) and set(two.heldout) < set(three.heldout)
    added = {p.category for p in set(three.train) - set(two.train)}
    assert added == set(BATCHES[2])


def test_seeded():
    assert contrast_prompts(seed=0) == contrast_prompts(seed=0)
    assert contrast_prompts(seed=0).train != contrast_prompts(seed=1).train
    assert all(t.count("{aim}") + t.count("{Aim}") == 1 for t in PLAIN_TEMPLATES + FRAMED_TEMPLATES
               + STANDALONE_TEMPLATES)


STOP = set("a an the to of and or that with for in on as is are be it its my me you your how into from by i do what "
           "can this there their them they we our us his her he she was were will would could should about so if at "
           "not no tell give explain write describe please some any get make".split())


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if w not in STOP and len(w) > 2}


@pytest.fixture(scope="module")
def references() -> list[str]:
    """Every evaluation prompt and every tuning prompt the trainer or the baselines are tuned on."""
    from svgt.data import build_corpus, edgy_tuning_prompts, tuning_prompts

    corpus = build_corpus()
    harmful, benign = tuning_prompts(corpus)
    held = [p.prompt for p in corpus.heldout_benign]  # both halves: tuning and evaluation
    return list(dict.fromkeys(evaluation_texts() + harmful + benign + held + edgy_tuning_prompts(corpus)))


def test_no_aim_shares_half_its_content_words_with_a_tuning_or_evaluation_prompt(references):
    # Hand-written aims could paraphrase a prompt we tune or evaluate on without sharing an 8-gram with it; this is
    # the stricter test the content requests have, over every tuning and evaluation prompt.
    refs = [_words(r) for r in references]
    for pairs in PAIRS.values():
        for pair in pairs:
            for aim in pair:
                mine = _words(aim)
                shared = max(len(mine & theirs) for theirs in refs)
                assert shared / len(mine) < 0.5, aim


def test_no_prompt_overlaps_an_evaluation_prompt():
    data = contrast_prompts(seed=0, batches=len(BATCHES))
    texts = [p.text for p in data.train + data.heldout]
    assert find_overlaps(texts, evaluation_texts()) == []
