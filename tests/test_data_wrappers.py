"""Jailbreak-style wrappers: well-formed, clear of the evaluation jailbreak templates, and paired so that the wrapper
alone decides nothing."""

import re

from svgt.data import evaluation_texts, find_overlaps
from svgt.data.wrappers import (HELDOUT_WRAPPERS, WRAPPERS, heldout_wrappers, training_wrappers, wrap,
                                wrapped_examples, wrapped_tuning_prompts)


def test_every_wrapper_holds_one_request_slot_and_is_distinct():
    assert len(WRAPPERS) >= 24 and len(set(WRAPPERS)) == len(WRAPPERS)
    for w in WRAPPERS:
        assert w.count("{q}") == 1 and not re.search(r"\{(?!q\})", w), w[:60]
        assert 40 <= len(w.split()) <= 240, w[:60]
    assert wrap("Say {q} now.", "  hello ") == "Say hello now."


def test_no_wrapper_shares_an_8gram_with_an_evaluation_prompt():
    # The DAN and in-the-wild suites are evaluation data: training on their templates would measure memory.
    assert find_overlaps([w.replace("{q}", " ") for w in WRAPPERS], evaluation_texts()) == []


def test_pairs_share_their_wrapper_and_differ_only_in_the_request():
    harmful, benign = ["HARM-A", "HARM-B"], ["SAFE-A", "SAFE-B", "SAFE-C"]
    train = training_wrappers(seed=0)
    unsafe, safe = wrapped_examples(harmful, benign, 2 * len(train), seed=0)
    assert len(unsafe) == len(safe) == 2 * len(train)
    used = []
    for u, s in zip(unsafe, safe):
        h = next(x for x in harmful if x in u)
        b = next(x for x in benign if x in s)
        assert u.replace(h, "{q}") == s.replace(b, "{q}")
        used.append(u.replace(h, "{q}"))
    assert sorted(used[: len(train)]) == sorted(train)  # each training wrapper once per round
    assert wrapped_examples(harmful, benign, 5, seed=0) == wrapped_examples(harmful, benign, 5, seed=0)
    assert wrapped_examples(harmful, benign, 5, seed=0) != wrapped_examples(harmful, benign, 5, seed=1)
    assert wrapped_examples(harmful, [], 5) == ([], []) and wrapped_examples(harmful, benign, 0) == ([], [])


def test_held_out_wrappers_are_tuning_only():
    held, train = heldout_wrappers(seed=0), training_wrappers(seed=0)
    assert len(held) == HELDOUT_WRAPPERS and not set(held) & set(train) and len(held) + len(train) == len(WRAPPERS)
    assert heldout_wrappers(seed=0) == held and heldout_wrappers(seed=1) != held
    tuned = wrapped_tuning_prompts(["R0", "R1", "R2"], seed=0)
    assert [t.replace(f"R{i}", "{q}") for i, t in enumerate(tuned)] == list(held[:3])
