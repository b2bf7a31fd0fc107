"""The per-layer probe sweep: states per layer as the backbone computes them, a probe that separates what is
separable, AUROC per layer for each training set and test set."""

import pytest
import torch
from tiny import tiny_backbone

from svgt.training.probe import fit_probe, last_token_states, layer_sweep, plot_sweep


def test_last_token_states_are_each_layers_output_at_the_last_prompt_token():
    bb = tiny_backbone("llama")
    prompts = ["a short one", "a somewhat longer prompt about cats"]
    states = last_token_states(bb, prompts, batch_size=1)
    assert states.shape[:2] == (len(bb.layers), 2)
    from svgt.prompts import encode_prompts

    ids, mask = encode_prompts(bb.tokenizer, prompts[1:])
    with torch.no_grad():
        hidden = bb.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    assert torch.allclose(states[-1, 1], hidden[-1][0, -1], atol=1e-5)
    assert torch.allclose(states[0, 1], hidden[1][0, -1], atol=1e-5)


def test_probe_separates_a_separable_set_and_not_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 16, generator=g)
    y = (x[:, 3] > 0).long()
    probe = fit_probe(x[:100], y[:100])
    from svgt.training.metrics import auroc

    assert auroc(probe(x[100:]), y[100:]) > 0.95
    noise = torch.randint(0, 2, (200,), generator=g)
    assert abs(auroc(fit_probe(x[:100], noise[:100])(x[100:]), noise[100:]) - 0.5) < 0.2


def test_layer_sweep_reports_every_layer_for_every_pair_of_sets(tmp_path):
    bb = tiny_backbone("llama")
    train = {"a": (["cat", "dog", "sun", "moon"], [1, 1, 0, 0])}
    test = {"t": (["cow", "star"], [1, 0]), "u": (["hen", "sky"], [1, 0])}
    sweep = layer_sweep(bb, train, test)
    assert sweep["layers"] == list(range(len(bb.layers)))
    assert set(sweep["auroc"]["a"]) == {"t", "u"}
    assert all(len(v) == len(bb.layers) for v in sweep["auroc"]["a"].values())
    assert sweep["n"] == {"a": 4, "t": 2, "u": 2}
    plot_sweep(sweep, tmp_path / "p.png", extract_layer=1)
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_states_do_not_depend_on_the_left_padding_of_a_batch():
    # GPT-2's positions are absolute: a padded row reads the states generation computes only at honest positions.
    bb = tiny_backbone("gpt2")
    prompts = ["a short one", "a somewhat longer prompt about cats"]
    alone, batched = last_token_states(bb, prompts, batch_size=1), last_token_states(bb, prompts, batch_size=2)
    assert torch.allclose(alone, batched, atol=1e-5)


def test_limit_sets_keeps_the_first_prompts_of_each_label():
    from svgt.training.probe import limit_sets

    sets = {"a": (["h1", "b1", "h2", "h3", "b2", "b3"], [1, 0, 1, 1, 0, 0])}
    assert limit_sets(sets, 2) == {"a": (["h1", "b1", "h2", "b2"], [1, 0, 1, 0])}


def test_mean_pooled_states_average_each_layer_over_the_prompt_tokens_only():
    bb = tiny_backbone("llama")
    prompts = ["a short one", "a somewhat longer prompt about cats"]
    states = last_token_states(bb, prompts, batch_size=2, pool="mean")  # the short one is left-padded
    from svgt.prompts import encode_prompts

    ids, mask = encode_prompts(bb.tokenizer, prompts[:1])
    with torch.no_grad():
        hidden = bb.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    assert torch.allclose(states[2, 0], hidden[3][0].mean(0), atol=1e-5)
    with pytest.raises(ValueError, match="pool"):
        last_token_states(bb, prompts, pool="max")


def test_layer_sweep_reads_each_prompt_inside_its_template():
    # A template that drops the prompt leaves every state equal, so no layer can separate anything.
    bb = tiny_backbone("llama")
    train = {"a": (["cat", "dog", "sun", "moon"], [1, 1, 0, 0])}
    test = {"t": (["cow", "star", "hen", "sky"], [1, 0, 1, 0])}
    blind = layer_sweep(bb, train, test, template="Is this harmful?")
    assert all(v == 0.5 for v in blind["auroc"]["a"]["t"])
    seen = layer_sweep(bb, train, test, template="Is this harmful? {prompt}")
    assert any(v != 0.5 for v in seen["auroc"]["a"]["t"])
