"""`dpo_lora`: DPO of LoRA adapters (TRL + PEFT) on a tiny random backbone with a real tokenizer and chat template."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl")
pytest.importorskip("peft")

from tiny import save_tiny_hf_backbone, tiny_backbone  # noqa: E402

import svgt  # noqa: E402
from svgt.data.refusals import refusal_for  # noqa: E402
from svgt.methods import make_method  # noqa: E402
from svgt.methods.base import MethodContext, PlainMethod  # noqa: E402
from svgt.methods.dpo import DPOLoRAMethod, lora_targets, preference_pairs  # noqa: E402

HARMFUL = [f"how do I build weapon number {i}" for i in range(6)]
BENIGN = [f"tell me a story about cat {i}" for i in range(6)]
PROBE = torch.tensor([[5, 6, 7, 8, 9, 10]])
FAST = dict(max_steps=6, batch_size=4, learning_rate=1e-2, beta=0.1)


def context(backbone, **extras) -> MethodContext:
    extras = extras or {"harmful_answers": {p: "Sure, here is how: first you mix the parts." for p in HARMFUL},
                        "benign_answers": {p: "Once upon a time a cat sat on a mat." for p in BENIGN}}
    return MethodContext(backbone, HARMFUL, BENIGN, HARMFUL[:2], BENIGN[:2], seed=0, extras=extras)


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_untouched(model, before, logits_before):
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert "peft_config" not in model.__dict__
    assert not any("lora" in name for name, _ in model.named_modules())
    with torch.no_grad():
        assert torch.equal(model(PROBE).logits, logits_before)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One DPO run shared by the tests below, with its own cache folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SVGT_CACHE", str(tmp_path_factory.mktemp("cache")))
        torch.set_num_threads(2)
        backbone = svgt.load_backbone(save_tiny_hf_backbone(tmp_path_factory.mktemp("tiny")))
        before = snapshot(backbone.model)
        with torch.no_grad():
            logits = backbone.model(PROBE).logits.clone()
        ctx = context(backbone)
        method = DPOLoRAMethod(**FAST)
        params = method.prepare(ctx)
        yield method, ctx, params, before, logits, mp


def test_preference_pairs_construction():
    answers = {"harmful_answers": {HARMFUL[0]: "Sure, step one.", HARMFUL[1]: "I'm sorry, I can't help.",
                                   HARMFUL[2]: "  "},
               "benign_answers": {BENIGN[0]: "A story.", BENIGN[1]: "I cannot do that.", BENIGN[2]: "Another one."}}
    pairs = preference_pairs(context(None, **answers), max_pairs=10)
    # Only answers that exist, are non-empty and do not already refuse give a preference; kinds alternate.
    assert [(p["prompt"], p["kind"]) for p in pairs] == [
        (HARMFUL[0], "harmful"), (BENIGN[0], "benign"), (BENIGN[2], "benign")]
    assert pairs[0]["chosen"] == refusal_for(HARMFUL[0], 0) and pairs[0]["rejected"] == "Sure, step one."
    assert pairs[1]["chosen"] == "A story." and pairs[1]["rejected"] == refusal_for(BENIGN[0], 0)
    assert len(preference_pairs(context(None), max_pairs=5)) == 5
    assert [p["kind"] for p in preference_pairs(context(None), max_pairs=4)] == ["harmful", "benign"] * 2
    with pytest.raises(ValueError, match="no preference pairs"):
        DPOLoRAMethod().prepare(context(tiny_backbone("llama"), harmful_answers={}))


def test_lora_targets_per_family():
    assert lora_targets(tiny_backbone("llama").model) == ["q_proj", "v_proj"]
    assert lora_targets(tiny_backbone("gpt2").model) == ["c_attn"]
    assert isinstance(make_method("dpo_lora", max_pairs=3), DPOLoRAMethod)


def test_prepare_trains_adapters(trained):
    method, _, params, *_ = trained
    losses = method.losses[method._key(params)]
    assert len(losses) == FAST["max_steps"] == params["steps"]
    assert losses[0] == pytest.approx(0.6931, abs=1e-3)  # log 2: the policy starts equal to the reference
    assert min(losses[-2:]) < losses[0] - 0.02
    assert params["beta"] == 0.1 and params["lora_targets"] == ["q_proj", "v_proj"]
    assert params["pairs"] == 12 and params["pairs_harmful"] == params["pairs_benign"] == 6
    adapter = method.adapters[method._key(params)]
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert len(lora_b) == 2 * 4  # q_proj and v_proj in 4 layers
    assert all(v.abs().max() > 0 for v in lora_b)  # LoRA B starts at zero: nonzero means trained


def test_generate_differs_and_backbone_untouched(trained):
    method, ctx, _, before, logits, _ = trained
    assert_untouched(method.backbone.model, before, logits)
    with torch.no_grad(), method.steering():
        steered = method.backbone.model(PROBE).logits
        assert any("lora" in name for name, _ in method.backbone.model.named_modules())
    assert not torch.allclose(steered, logits)
    plain = PlainMethod()
    plain.prepare(ctx)
    prompts = HARMFUL[:2] + BENIGN[:2]
    out = method.generate(prompts, max_new_tokens=12)
    assert len(out.texts) == 4 and all(n <= 12 for n in out.new_tokens)
    assert out.texts != plain.generate(prompts, max_new_tokens=12).texts
    assert_untouched(method.backbone.model, before, logits)


def test_steering_restores_backbone_on_error(trained):
    method, _, _, before, logits, _ = trained
    with pytest.raises(RuntimeError, match="boom"), method.steering():
        raise RuntimeError("boom")
    assert_untouched(method.backbone.model, before, logits)


def test_second_prepare_reuses_cached_adapter(trained):
    method, ctx, params, *_, mp = trained
    files = list((svgt.backbone.cache_dir() / "dpo").glob("*.safetensors"))
    assert [f.name for f in files] == [method.cache_files[method._key(params)].name]
    header = files[0].read_bytes()
    assert header[8:9] == b"{"  # safetensors: a length, then a JSON header (no pickle)

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of using the cache")

    again = DPOLoRAMethod(**FAST)
    mp.setattr(again, "_train", no_training)
    assert again.prepare(ctx) == params
    key = again._key(params)
    assert again.losses[key] == method.losses[key]
    assert all(torch.equal(again.adapters[key][k], v) for k, v in method.adapters[key].items())
    # Different data, different key: a cache miss trains.
    other = DPOLoRAMethod(**FAST)
    mp.setattr(other, "_train", no_training)
    with pytest.raises(AssertionError, match="trained again"):
        other.prepare(context(ctx.backbone, benign_answers={p: "A different answer." for p in BENIGN}))


def test_grid_tuning_on_gpt2(tmp_path, monkeypatch):
    monkeypatch.setenv("SVGT_CACHE", str(tmp_path / "cache"))
    backbone = svgt.load_backbone(save_tiny_hf_backbone(tmp_path / "gpt2", family="gpt2"))
    before = snapshot(backbone.model)
    with torch.no_grad():
        logits = backbone.model(PROBE).logits.clone()
    grid = [{"beta": 0.1}, {"beta": 0.5}]
    method = DPOLoRAMethod(**{**FAST, "max_steps": 2}, grid=grid, tune_limit=2, tune_max_new_tokens=4)
    params = method.prepare(context(backbone))
    assert params["lora_targets"] == ["c_attn"] and len(method.adapters) == 2
    assert [row["params"] for row in method.search] == grid
    assert {"beta": params["beta"]} in grid
    assert_untouched(backbone.model, before, logits)
