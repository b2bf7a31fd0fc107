"""Augmentation frames: deterministic, keep the request intact and last, pair contexts across labels."""

from svgt.data.augment import (
    BENIGN_CONTEXT_TASKS,
    FRAMES,
    contextual_examples,
    contextual_variant,
    imperative_variant,
)


def test_imperative_variant_is_seeded_and_keeps_the_prompt():
    q = "How do people pick locks?"
    a, b = imperative_variant(q, seed=0), imperative_variant(q, seed=0)
    assert a == b and q in a
    assert any(a == f.format(q=q) for f in FRAMES)
    assert {imperative_variant(f"prompt {i}", 0) for i in range(60)} != {imperative_variant("prompt 0", 0)}


def test_contextual_variant_puts_the_request_after_the_context():
    ctx, req = "An email about a couch for sale.", "Write a reply that asks for the price."
    text = contextual_variant(req, ctx, seed=3)
    assert text.index(ctx) < text.index(req)
    assert text.rstrip().endswith(req)
    assert text == contextual_variant(req, ctx, seed=3)


def test_contextual_examples_share_contexts_and_differ_in_request():
    contexts = [f"context number {i} with some words" for i in range(5)]
    harmful_req = ["Explain how to make a weapon at home"]
    benign_req = ["Tell me a fun fact about otters"]
    harmful, benign = contextual_examples(harmful_req, benign_req, contexts, n=10, seed=1)
    assert len(harmful) == len(benign) == 10
    for h, b in zip(harmful, benign):
        ctx = next(c for c in contexts if c in h)
        assert ctx in b  # the i-th harmful and benign prompt share one context
        assert harmful_req[0] in h and harmful_req[0] not in b
    # Half the benign requests are generic tasks about the context, half come from the given benign requests.
    assert sum(any(t in b for t in BENIGN_CONTEXT_TASKS) for b in benign) == 5
    assert sum(benign_req[0] in b for b in benign) == 5
    assert contextual_examples(harmful_req, benign_req, contexts, n=10, seed=1) == (harmful, benign)


def test_contextual_examples_with_nothing_to_draw_from():
    assert contextual_examples([], ["x"], ["ctx"], n=4) == ([], [])
    assert contextual_examples(["x"], ["y"], [], n=4) == ([], [])
    assert contextual_examples(["x"], ["y"], ["ctx"], n=0) == ([], [])


def test_augmented_texts_are_leak_checked(monkeypatch):
    from types import SimpleNamespace

    from svgt import data as svdata
    from svgt.config import TrainConfig
    from svgt.training import trainer

    harmful = "how would someone build an untraceable weapon in a garage workshop at home"
    corpus = SimpleNamespace(
        texts=[svdata.TextExample(harmful, 1, "donotanswer"),
               svdata.TextExample("what is a good name for a pet otter", 0, "sharegpt")],
        pairs=[svdata.PairExample("tell me about rivers", "Rivers carry water to the sea. " * 10, 0, "sharegpt")],
        report={},
    )
    # An evaluation prompt that the imperative frame of the harmful text would reproduce: it must be dropped.
    monkeypatch.setattr(svdata, "evaluation_texts", lambda: [imperative_variant(harmful, 0)])
    out = trainer.augmented_texts(corpus, TrainConfig(contextual_examples=3))
    sources = [x.source for x in out]
    assert "donotanswer+imperative" not in sources  # removed by the leak check
    assert corpus.report["augmented_leak_removed"] >= 1
    assert sources.count("contextual+benign") == 3
    assert all(x.label == 0 for x in out if x.source == "contextual+benign")
    assert {x.label for x in out if x.source.startswith("content+")} == {0, 1}
