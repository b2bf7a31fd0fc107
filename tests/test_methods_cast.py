"""CAST on tiny random backbones: the vectors, the condition check, and steering only where the condition holds."""

import pytest
import torch
from tiny import tiny_backbone

from svgt.config import GenerationConfig
from svgt.generation import generate
from svgt.methods import MethodContext, make_method
from svgt.methods.cast import (CASTMethod, behavior_vectors, best_split, condition_met, condition_similarity,
                               pca_direction)
from svgt.methods.steering import response_activations

# Two classes a random model tells apart by what they are made of: the condition is built from these.
HARMFUL = [f"zq{'x' * (3 + i % 4)} vv{'k' * (2 + i % 3)} ww" for i in range(12)]
BENIGN = [f"ab{'c' * (3 + i % 4)} de{'f' * (2 + i % 3)} gh" for i in range(12)]
COMPLIANCE = {p: f"Sure, here is how: {p[::-1]} first get the parts." for p in HARMFUL}


def _ctx(bb):
    return MethodContext(bb, HARMFUL, BENIGN, HARMFUL[:2], BENIGN[:2], seed=0,
                         extras={"harmful_answers": COMPLIANCE})


def _method(**kw):
    defaults = dict(condition_layers=[1, 2], quantiles=[0.5], windows=[(0.5, 1.0)], strengths=[4.0, 40.0],
                    tune_max_new_tokens=3, tune_limit=2)
    return CASTMethod(**{**defaults, **kw})


def test_pca_direction_recovers_a_planted_axis_pointing_at_the_positive_class():
    gen = torch.Generator().manual_seed(0)
    axis = torch.nn.functional.normalize(torch.randn(16, generator=gen), dim=0)
    base = torch.randn(16, generator=gen) * 5
    pos = base + 3 * axis + 0.1 * torch.randn(40, 16, generator=gen)
    neg = base - 3 * axis + 0.1 * torch.randn(40, 16, generator=gen)
    for p, n, sign in ((pos, neg, 1), (neg, pos, -1)):
        d = pca_direction(p, n)
        assert torch.isclose(d.norm(), torch.tensor(1.0), atol=1e-5)
        assert float(d @ axis) * sign > 0.99


def test_condition_similarity_is_the_papers_formula():
    gen = torch.Generator().manual_seed(1)
    h, c = torch.randn(3, 8, generator=gen), torch.randn(8, generator=gen)
    got = condition_similarity(h, c)
    for row, value in zip(h, got):
        proj = torch.tanh((row @ c) / (c @ c) * c)
        assert torch.isclose(value, torch.nn.functional.cosine_similarity(row, proj, dim=0), atol=1e-5)
    sims = torch.tensor([0.1, 0.5, 0.9])
    assert condition_met(sims, 0.5, ">").tolist() == [False, False, True]
    assert condition_met(sims, 0.5, "<").tolist() == [True, False, False]
    with pytest.raises(ValueError, match="direction"):
        condition_met(sims, 0.5, ">=")


def test_behavior_vector_is_the_principal_refusal_axis_scaled_by_the_mean_gap():
    bb = tiny_backbone("llama")
    pairs = [{"prompt": p, "chosen": "I cannot help with that.", "rejected": COMPLIANCE[p]} for p in HARMFUL]
    vectors = behavior_vectors(bb, pairs, [2])
    refusing, answering = (response_activations(bb, HARMFUL, [q[side] for q in pairs], [bb.layers[2]])[0]
                           for side in ("chosen", "rejected"))
    u = pca_direction(refusing, answering)
    assert torch.allclose(vectors[2], u * ((refusing - answering) @ u).mean(), atol=1e-5)
    assert float(((refusing - answering) @ vectors[2]).mean()) > 0  # points from the answer toward the refusal


def test_best_split_is_the_f1_optimal_threshold_and_direction():
    pos, neg = torch.tensor([0.1, 0.2, 0.25]), torch.tensor([0.5, 0.6, 0.7])
    assert best_split(pos, neg) == {"direction": "<", "threshold": 0.375, "f1": 1.0}
    assert best_split(neg, pos)["direction"] == ">"


def test_condition_fires_on_the_class_it_was_built_from_and_not_the_other():
    bb = tiny_backbone("llama")
    method = _method(condition_layers=[1], strengths=[4.0])
    method.prepare(_ctx(bb))
    method.params.update(condition_layer=1, **{k: method.splits[1][k] for k in ("direction", "threshold")})
    assert method.splits[1]["f1"] == 1.0
    assert method.condition(HARMFUL).all() and not method.condition(BENIGN).any()


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3"])
def test_behavior_is_added_only_where_the_condition_holds(family):
    bb = tiny_backbone(family)
    method = _method()
    method.prepare(_ctx(bb))
    split = max(method.splits.items(), key=lambda kv: kv[1]["f1"])
    method.params.update(condition_layer=split[0], direction=split[1]["direction"],
                         threshold=split[1]["threshold"], strength=40.0, window=[0.5, 1.0])
    prompts = [HARMFUL[0], BENIGN[0], HARMFUL[1], BENIGN[1]]
    before = {k: v.clone() for k, v in bb.model.state_dict().items()}
    out = method.generate(prompts, 5, batch_size=3)
    assert method.last_met == [bool(x) for x in method.condition(prompts)]
    assert any(method.last_met) and not all(method.last_met)
    cfg = GenerationConfig(max_new_tokens=5, guidance=False)
    plain = generate(bb, None, prompts, cfg).texts
    with method.steering():
        steered = generate(bb, None, prompts, cfg).texts
    assert out.texts == [steered[0], plain[1], steered[2], plain[3]]
    assert steered[0] != plain[0] or steered[2] != plain[2]  # the behavior vector does change what it touches
    assert all(0 < n <= 5 for n in out.new_tokens)
    state = bb.model.state_dict()
    assert all(torch.equal(before[k], state[k]) for k in before)
    assert sum(len(m._forward_hooks) for m in bb.model.modules()) == 0


def test_prepare_searches_every_condition_and_behavior_and_composes_exactly():
    bb = tiny_backbone("llama")
    method = make_method("cast", condition_layers=[1, 2], quantiles=[0.0, 1.0], windows=[(0.5, 1.0)],
                         strengths=[4.0, 40.0], tune_max_new_tokens=3, tune_limit=2)
    params = method.prepare(_ctx(bb))
    # 2 layers x (the best split + 2 directions x 2 quantiles), x 2 strengths.
    assert len(method.search) == 20 and sum(r["chosen"] for r in method.search) == 1
    assert {"condition_layer", "direction", "threshold", "window", "strength", "behavior_layers"} <= set(params)
    assert params["behavior_layers"] == [2, 3]
    # A condition nobody meets is the plain backbone: its PPL is the reference's exactly.
    nobody = [r for r in method.search if r["tune_met_harmful"] == 0 and r["tune_met_benign"] == 0]
    assert nobody and all(r["tune_ppl"] == pytest.approx(r["tune_ppl_unguided"]) for r in nobody)
    # A composed row matches generating with that setting for real.
    row = next(r for r in method.search if 0 < r["tune_met_harmful"] + r["tune_met_benign"])
    method.params.update(row["params"])
    prompts = HARMFUL[:2] + BENIGN[:2]
    real = method.generate(prompts, 3)
    met = method.last_met
    assert sum(met[:2]) / 2 == row["tune_met_harmful"] and sum(met[2:]) / 2 == row["tune_met_benign"]
    assert not any(p.requires_grad for p in bb.model.parameters()) and real.seconds > 0


def test_chosen_settings_skip_the_search_and_steer_exactly_as_the_search_chose():
    bb = tiny_backbone("llama")
    grid = dict(condition_layers=[1, 2], quantiles=[0.0, 0.5, 1.0], windows=[(0.25, 0.5), (0.5, 1.0)],
                strengths=[4.0, 40.0], tune_max_new_tokens=3, tune_limit=2)
    searched = make_method("cast", **grid)
    params = searched.prepare(_ctx(bb))
    reused = make_method("cast", **grid)
    reused.chosen = params
    assert reused.prepare(_ctx(bb)) == params and reused.search == []
    # Only the chosen condition layer and window are built, and they equal the searched run's vectors.
    assert set(reused.conditions) == {params["condition_layer"]}
    assert set(reused.behaviors) == set(params["behavior_layers"])
    assert torch.equal(reused.conditions[params["condition_layer"]], searched.conditions[params["condition_layer"]])
    assert all(torch.equal(reused.behaviors[i], searched.behaviors[i]) for i in params["behavior_layers"])
    prompts = HARMFUL[:3] + BENIGN[:3]
    assert reused.generate(prompts, 4).texts == searched.generate(prompts, 4).texts
    assert reused.last_met == searched.last_met
    partial = make_method("cast", **grid)
    partial.chosen = {"condition_layer": 1, "direction": ">", "threshold": 0.1}
    with pytest.raises(ValueError, match="cast: the reused settings lack window, strength"):
        partial.prepare(_ctx(bb))


def test_a_search_with_a_store_reruns_nothing_it_finished():
    from svgt.methods.tuning import TUNING_LOG

    bb, store = tiny_backbone("llama"), {}
    ctx = _ctx(bb)
    ctx.extras[TUNING_LOG] = store
    first = _method()
    params = first.prepare(ctx)
    assert len(store) == 3  # the plain run and one steered run per strength
    again = _method()
    again.answer = lambda *a, **k: pytest.fail("a finished tuning run was generated again")
    assert again.prepare(ctx) == params and again.search == first.search


def test_registered_with_the_other_methods():
    from svgt.methods import METHOD_NAMES

    assert "cast" in METHOD_NAMES and isinstance(make_method("cast"), CASTMethod)
