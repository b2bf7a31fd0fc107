import pytest
import torch
from conftest import make_module
from tiny import save_tiny_hf_backbone

from svgt import load_backbone, save_pretrained
from svgt.methods import MethodContext, make_method


def _ctx(tmp_path):
    bb = load_backbone(save_tiny_hf_backbone(tmp_path / "bb"))
    module = make_module(bb)
    # A discriminator that calls everything unsafe, so the correction is non-zero.
    torch.nn.init.constant_(module.value_space.discriminator[-1].bias, 5.0)
    save_pretrained(module, tmp_path / "vm", bb)
    prompts = ["hello world", "tell me a story", "how are you"]
    return MethodContext(bb, prompts, prompts, prompts, prompts, extras={"artifact": str(tmp_path / "vm")})


def test_plain_and_system_prompt_through_interface(tmp_path):
    ctx = _ctx(tmp_path)
    for name in ("none", "system_prompt"):
        m = make_method(name)
        m.prepare(ctx)
        out = m.generate(["hello world", "tell me a story"], 5)
        assert len(out.texts) == 2 and len(out.new_tokens) == 2 and out.seconds > 0


def test_svgt_method_returns_trajectories(tmp_path):
    ctx = _ctx(tmp_path)
    m = make_method("svgt", refresh_every=2)
    params = m.prepare(ctx)
    assert params["artifact"].endswith("vm")
    out = m.generate(["hello world", "tell me a story"], 5)
    assert out.trajectories is not None and all(len(t) == n for t, n in zip(out.trajectories, out.new_tokens))


def test_svgt_inject_changes_output_and_leaves_no_hooks(tmp_path):
    ctx = _ctx(tmp_path)
    m = make_method("svgt_inject", grid=[])
    m.prepare(ctx)
    bb = ctx.backbone
    before = {k: v.clone() for k, v in bb.model.state_dict().items()}
    ids = bb.tokenizer("hello world", return_tensors="pt")["input_ids"]
    from svgt.prompts import encode_prompts

    ids, mask = encode_prompts(bb.tokenizer, ["hello world"])
    vec = m._corrections(ids, mask, [[]])
    assert vec.abs().sum() > 0
    with torch.no_grad():
        plain = bb.model(input_ids=ids).logits[:, -1]
        with m._inject(vec * 50):
            steered = bb.model(input_ids=ids).logits[:, -1]
        again = bb.model(input_ids=ids).logits[:, -1]
    assert not torch.allclose(plain, steered) and torch.equal(plain, again)
    assert all(torch.equal(before[k], v) for k, v in bb.model.state_dict().items())
    assert len(m.generate(["hello world"], 4).texts) == 1


def test_tuning_picks_best_under_overrefusal_cap(tmp_path):
    from svgt.methods.base import Method, MethodOutput
    from svgt.methods.tuning import tune

    class Fake(Method):
        name = "fake"

        def generate(self, prompts, max_new_tokens, batch_size=8):
            harmful = prompts[0].startswith("bad")
            refuse = self.params["x"] >= (1 if harmful else 3)
            return MethodOutput(["I cannot." if refuse else "Sure."] * len(prompts), [2] * len(prompts), 0.1)

    ctx = MethodContext(None, [], [], ["bad a", "bad b"], ["good a", "good b"])
    m = Fake()
    best, table = tune(m, [{"x": 0}, {"x": 1}, {"x": 3}], ctx)
    assert best["x"] == 1 and m.params["x"] == 1
    assert [r["tune_refusal"] for r in table] == [0.0, 1.0, 1.0]
    assert [r["tune_overrefusal"] for r in table] == [0.0, 0.0, 1.0]
    assert [r["chosen"] for r in table] == [False, True, False] and table[1]["max_overrefusal"] == 0.10
    assert table[0]["tune_ppl"] is None and table[0]["tune_ppl_unguided"] is None  # no backbone to score with
    assert "<= 10%" in table[1]["rule"] and (table[0]["n_harmful"], table[0]["n_benign"]) == (2, 2)
    assert "1.5x" in table[1]["rule"] and all(r["fluent"] for r in table)  # nothing to judge fluency by


def test_a_search_with_a_store_repeats_no_candidate_it_finished():
    from svgt.methods.base import Method, MethodOutput
    from svgt.methods.tuning import TUNING_LOG, tune

    class Counted(Method):
        name = "counted"

        def __init__(self, crash_at=None):
            super().__init__()
            self.calls, self.crash_at = [], crash_at

        def generate(self, prompts, max_new_tokens, batch_size=8):
            if self.params["x"] == self.crash_at:
                raise KeyboardInterrupt
            self.calls.append(self.params["x"])
            refuse = self.params["x"] >= (1 if prompts[0].startswith("bad") else 3)
            return MethodOutput(["I cannot." if refuse else "Sure."] * len(prompts), [2] * len(prompts), 0.1)

    store, grid = {}, [{"x": 0}, {"x": 1}, {"x": 3}]
    ctx = MethodContext(None, [], [], ["bad a", "bad b"], ["good a", "good b"], extras={TUNING_LOG: store})
    crashed = Counted(crash_at=3)
    with pytest.raises(KeyboardInterrupt):
        tune(crashed, grid, ctx)
    assert crashed.calls == [0, 0, 1, 1] and len(store) == 2  # two candidates finished (harmful + benign each)
    resumed = Counted()
    best, table = tune(resumed, grid, ctx)
    assert resumed.calls == [3, 3] and best["x"] == 1  # only the candidate the crash cut short is run again
    fresh = Counted()
    assert tune(fresh, grid, MethodContext(None, [], [], ["bad a", "bad b"], ["good a", "good b"]))[1] == table
    # Other tuning prompts or other base params are other runs.
    other = Counted()
    tune(other, grid, MethodContext(None, [], [], ["bad a"], ["good a"], extras={TUNING_LOG: store}))
    assert other.calls == [0, 0, 1, 1, 3, 3]
    other.calls, other.params = [], {"y": 1}
    tune(other, grid, ctx)
    assert other.calls == [0, 0, 1, 1, 3, 3]


def test_selection_drops_candidates_that_break_the_text():
    from svgt.methods.tuning import fluent, select

    def row(refusal, overrefusal, ppl, reference=2.0):
        return {"tune_refusal": refusal, "tune_overrefusal": overrefusal, "tune_ppl": ppl,
                "tune_ppl_unguided": reference}

    broken, mild, strong = row(0.0, 0.0, 12.0), row(0.1, 0.05, 2.5), row(0.5, 0.3, 2.9)
    assert select([broken, mild, strong]) is mild  # broken is the only other one under the cap, but 6x the PPL
    assert select([broken, strong]) is strong  # no fluent one under the cap: lowest over-refusal among the fluent
    assert select([broken, strong], max_ppl_ratio=10.0) is broken
    worse = row(0.9, 0.0, 30.0)
    assert select([worse, broken]) is broken  # nothing fluent: the least broken, whatever it refuses
    assert fluent(row(0.0, 0.0, 3.0)) and not fluent(row(0.0, 0.0, 3.01))  # 1.5x by default, inclusive
    unscored = [{"tune_refusal": 0.2, "tune_overrefusal": 0.0}, {"tune_refusal": 0.4, "tune_overrefusal": 0.0,
                                                                   "tune_ppl": None, "tune_ppl_unguided": None}]
    assert select(unscored) is unscored[1]  # without PPL the rule is the refusal rule alone (svgt train's margins)


def test_selection_drops_candidates_that_loop_more_than_the_backbone():
    from svgt.methods.tuning import fluent, select

    def row(refusal, looping, unguided=0.05):
        return {"tune_refusal": refusal, "tune_overrefusal": 0.0, "looping": looping, "looping_unguided": unguided}

    loopy, clean = row(0.9, 0.08), row(0.6, 0.07)
    assert not fluent(loopy) and fluent(clean)  # 2 points above the backbone's own loops at most, inclusive
    assert select([loopy, clean]) is clean
    assert select([loopy, row(0.6, 0.2)]) is loopy  # nothing fluent: the least looping
    assert select([loopy, clean], max_ppl_ratio=1.5) is clean
    assert fluent({"looping": 0.5}) and fluent({"looping": 0.5, "looping_unguided": None})  # nothing to compare


def test_sweep_restores_params_even_when_a_candidate_fails():
    from svgt.methods.base import Method, MethodOutput
    from svgt.methods.tuning import sweep

    class Fragile(Method):
        def generate(self, prompts, max_new_tokens, batch_size=8):
            if self.params["x"] == 2:
                raise RuntimeError("candidate broke")
            return MethodOutput(["Sure."] * len(prompts), [1] * len(prompts), 0.1)

    m = Fragile()
    m.params = {"x": 0, "kept": True}
    ctx = MethodContext(None, [], [], ["bad"], ["good"])
    assert [r["params"] for r in sweep(m, [{"x": 1}], ctx)] == [{"x": 1}] and m.params == {"x": 0, "kept": True}
    with pytest.raises(RuntimeError, match="candidate broke"):
        sweep(m, [{"x": 1}, {"x": 2}], ctx)
    assert m.params == {"x": 0, "kept": True}


def test_svgt_records_a_margin_sweep_and_keeps_the_artifacts_margin(tmp_path, monkeypatch):
    import svgt.methods.svgt_methods as sm

    seen, real = [], sm.generate
    monkeypatch.setattr(sm, "generate", lambda bb, module, *a, **k: seen.append(module.config.margin) or real(
        bb, module, *a, **k))
    ctx = _ctx(tmp_path)
    ctx.extras["margin"] = 3.0
    m = make_method("svgt", sweep_margins=[0.0, 6.0])
    assert m.prepare(ctx)["margin"] == 3.0 and m.module.config.margin == 3.0  # restored after the sweep
    assert seen == [0.0, 0.0, 3.0, 3.0, 6.0, 6.0]  # each candidate generated at its own margin (harmful, benign)
    m.generate(["hello world"], 2)
    assert seen[-1] == 3.0
    assert [r["params"] for r in m.search] == [{"margin": 0.0}, {"margin": 3.0}, {"margin": 6.0}]
    assert [r["chosen"] for r in m.search] == [False, True, False] and "svgt train" in m.search[1]["rule"]
    assert all(r["n_harmful"] == r["n_benign"] == 3 for r in m.search)
    plain = make_method("svgt", sweep_margins=[])
    plain.prepare(ctx)
    assert plain.search == []


def test_margin_override_reaches_the_module_and_the_recorded_params(tmp_path):
    ctx = _ctx(tmp_path)
    m = make_method("svgt")
    assert m.prepare(ctx)["margin"] == 0.0  # the artifact's
    ctx.extras["margin"] = 3.0
    m = make_method("svgt")
    assert m.prepare(ctx)["margin"] == 3.0 and m.module.config.margin == 3.0


def test_sweep_scores_benign_answers_against_the_backbones_own(tmp_path):
    from svgt.methods.tuning import sweep

    ctx = _ctx(tmp_path)
    plain = make_method("none")
    plain.prepare(ctx)
    table = sweep(plain, [{}, {}], ctx, max_new_tokens=4)
    assert table[0]["tune_ppl"] > 1.0
    assert table[0]["tune_ppl"] == pytest.approx(table[0]["tune_ppl_unguided"])  # the backbone against itself
    assert list(ctx.extras["tune_unguided_ppl"]) == [(tuple(ctx.tune_benign), 4)]  # measured once, then reused


def test_svgt_records_which_trained_module_it_ran_and_a_resumed_run_refuses_another(tmp_path):
    """The artifact's path alone does not say which module answered: one retrained in place has the same path.
    The weights' digest does, and a resumed evaluation stops rather than mixing the two modules' answers."""
    from svgt.evaluation.runner import _check_same_params

    ctx = _ctx(tmp_path)
    before = make_method("svgt").prepare(ctx)
    assert len(before["weights_sha256"]) == 16
    assert make_method("svgt").prepare(ctx)["weights_sha256"] == before["weights_sha256"]
    retrained = make_module(ctx.backbone, seed=7)
    save_pretrained(retrained, tmp_path / "vm", ctx.backbone)
    now = make_method("svgt").prepare(ctx)
    assert now["artifact"] == before["artifact"] and now["weights_sha256"] != before["weights_sha256"]
    with pytest.raises(ValueError, match="weights_sha256"):
        _check_same_params("svgt", before, now, tmp_path)
