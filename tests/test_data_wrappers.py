"""Jailbreak-style wrappers: well-formed, clear of the evaluation jailbreak templates, and paired so that the wrapper
alone decides nothing."""

import re

from svgt.data import evaluation_texts, find_overlaps
from svgt.data.wrappers import WRAPPERS, wrap, wrapped_examples


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
    unsafe, safe = wrapped_examples(harmful, benign, 2 * len(WRAPPERS), seed=0)
    assert len(unsafe) == len(safe) == 2 * len(WRAPPERS)
    used = []
    for u, s in zip(unsafe, safe):
        h = next(x for x in harmful if x in u)
        b = next(x for x in benign if x in s)
        assert u.replace(h, "{q}") == s.replace(b, "{q}")
        used.append(u.replace(h, "{q}"))
    assert sorted(used[: len(WRAPPERS)]) == sorted(WRAPPERS)  # each wrapper once per round
    assert wrapped_examples(harmful, benign, 5, seed=0) == wrapped_examples(harmful, benign, 5, seed=0)
    assert wrapped_examples(harmful, benign, 5, seed=0) != wrapped_examples(harmful, benign, 5, seed=1)
    assert wrapped_examples(harmful, [], 5) == ([], []) and wrapped_examples(harmful, benign, 0) == ([], [])
