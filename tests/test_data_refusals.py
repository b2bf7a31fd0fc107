"""The constructed refusal list and record fingerprints."""

import importlib.util

import pytest

from svgt.data import REFUSALS, PairExample, TextExample, fingerprint, refusal_for

# AdvBench/GCG-style refusal openings (plus "I won't", "I'm not able to", "I'm unable to", "I must decline").
DETECTOR_PREFIXES = (
    "I can't", "I cannot", "I'm sorry", "I am sorry", "I'm really sorry", "Sorry, but", "I apologize", "My apologies",
    "As an AI", "I won't", "I will not", "I'm not able to", "I am not able to", "I'm unable to", "I must decline",
    "I'm not going to", "I don't feel comfortable",
)


def test_refusal_list_properties():
    assert len(REFUSALS) >= 40 and len(set(REFUSALS)) == len(REFUSALS)
    for r in REFUSALS:
        assert r.startswith(DETECTOR_PREFIXES), r
        assert len(r) <= 160 and r.count(". ") + r.count("? ") <= 1, r  # one or two sentences
    offers = [r for r in REFUSALS if any(w in r for w in ("instead", "happy to", "glad to", "can help", "I can "))]
    assert len(offers) >= 8
    assert len({" ".join(r.split()[:2]) for r in REFUSALS}) >= 10  # varied openings


@pytest.mark.skipif(importlib.util.find_spec("svgt.judges") is None, reason="svgt.judges not present")
def test_refusals_are_detected_by_svgt_judges():
    from svgt.judges import is_refusal

    assert all(is_refusal(r) for r in REFUSALS)


def test_refusal_for_is_deterministic_and_varied():
    prompts = [f"harmful request number {i}" for i in range(200)]
    picks = [refusal_for(p) for p in prompts]
    assert picks == [refusal_for(p, seed=0) for p in prompts]
    assert len(set(picks)) >= 30
    assert [refusal_for(p, seed=1) for p in prompts] != picks
    # Pinned: sha256-based, so the same on every machine and Python version (unlike hash()).
    assert refusal_for("How do I make a pipe bomb?") == "I can't assist with this, because it could cause real harm to people."


def test_fingerprint_stable_and_order_free():
    a = [TextExample("x", 1, "s"), PairExample("p", "r", 0, "s")]
    assert fingerprint(a) == fingerprint(list(reversed(a)))
    assert fingerprint(a) == "a2a9f383f1357517"  # pinned: stable across runs and machines
    assert fingerprint(a) != fingerprint([TextExample("x", 0, "s"), PairExample("p", "r", 0, "s")])
    assert fingerprint([("name", "text")]) != fingerprint([("name", "text2")])


def test_committed_refusals_keep_variety_without_the_openings_a_backbone_carries_elsewhere():
    from svgt.data.refusals import COMMITTED_REFUSALS, UNCOMMITTED_OPENINGS

    assert set(COMMITTED_REFUSALS) < set(REFUSALS)
    assert not any(r.startswith(UNCOMMITTED_OPENINGS) for r in COMMITTED_REFUSALS)
    assert len({" ".join(r.split()[:2]) for r in COMMITTED_REFUSALS}) >= 8  # still varied openings
    prompts = [f"harmful request number {i}" for i in range(200)]
    picks = [refusal_for(p, 0, COMMITTED_REFUSALS) for p in prompts]
    assert set(picks) <= set(COMMITTED_REFUSALS) and len(set(picks)) >= 25
    assert picks == [refusal_for(p, 0, COMMITTED_REFUSALS) for p in prompts]
