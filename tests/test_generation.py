import pytest
import torch
from transformers.pytorch_utils import Conv1D
from conftest import make_module, with_conditional_path
from tiny import FAMILIES, tiny_backbone

from svgt import GenerationConfig, generate
from svgt.generation import GuidedDecoder
from svgt.hooks import BackboneHooks, ForwardPlan, IdleLinears, bridged_forward
from svgt.prompts import left_pad

PROMPTS = [[2, 5, 6, 7, 8, 9, 10, 11], [2, 12, 13, 14]]


def _run(backbone, module, **cfg):
    ids, mask = left_pad(PROMPTS, 0)
    config = GenerationConfig(stop_at_eos=False, **cfg)
    return ids, mask, GuidedDecoder(backbone, module, config).run(ids, mask, keep_logits=True)


def _recompute_error(backbone, module, ids, mask, result) -> float:
    """Largest gap between each cached step's logits and a cache-free forward of the same sequence and bridge."""
    gen = torch.tensor(result.token_ids)
    c = module.config
    err = 0.0
    with BackboneHooks(backbone.layers, c.insert_layer, c.extract_layer, "sdpa") as hooks, torch.no_grad():
        for t, (logits, bridge) in enumerate(zip(result.step_logits, result.step_bridges)):
            out = bridged_forward(backbone.model, hooks, ids, mask, bridge, gen[:, :t])
            err = max(err, (out.logits[:, -1] - logits).abs().max().item())
    return err


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("refresh", [dict(refresh_every=0), dict(refresh_every=2, refresh_mode="exact", momentum=0.3)])
def test_cached_decoding_equals_full_recomputation(family, refresh):
    backbone = tiny_backbone(family)
    module = make_module(backbone)
    ids, mask, result = _run(backbone, module, max_new_tokens=9, **refresh)
    assert _recompute_error(backbone, module, ids, mask, result) < 1e-4
    if refresh["refresh_every"]:
        bridges = [b for b in result.step_bridges if b is not None]
        assert any(not torch.equal(bridges[0], b) for b in bridges), "refresh never changed the bridge"


def test_eager_attention_matches_too():
    backbone = tiny_backbone("llama", attn="eager")
    module = make_module(backbone)
    ids, mask, result = _run(backbone, module, max_new_tokens=6, refresh_every=2, refresh_mode="exact")
    gen = torch.tensor(result.token_ids)
    c = module.config
    with BackboneHooks(backbone.layers, c.insert_layer, c.extract_layer, "eager") as hooks, torch.no_grad():
        out = bridged_forward(backbone.model, hooks, ids, mask, result.step_bridges[-1], gen[:, :-1])
    assert (out.logits[:, -1] - result.step_logits[-1]).abs().max() < 1e-4


def test_bridge_changes_logits(llama):
    # Guard against a vacuous equality above: the bridge must actually reach the output.
    module = make_module(llama)
    _, _, guided = _run(llama, module, max_new_tokens=3)
    _, _, plain = _run(llama, module, max_new_tokens=3, guidance=False)
    assert (guided.step_logits[0] - plain.step_logits[0]).abs().max() > 1e-3


def test_fast_refresh_is_stale_but_close_and_flags_refreshes(llama):
    module = make_module(llama)
    ids, mask, fast = _run(llama, module, max_new_tokens=9, refresh_every=2, momentum=0.3)
    assert fast.telemetry[0].refreshed == [False, False, False, True, False, True, False, True, False]
    # Earlier response entries are stale after a fast refresh: not equal to a recomputation, by design.
    assert _recompute_error(llama, module, ids, mask, fast) > 1e-6


class _AllRowsFastRefresh(GuidedDecoder):
    """Fast refresh as first written: the bridge rows run through every layer, and the layers below the insert
    layer compute (masked, discarded) entries for them. The shipped path skips that work and must match it."""

    def _fast_refresh(self, token, position, lengths, m_len, new_bridge, has_bridge, inserted):
        assert bool(has_bridge.all()) and not bool(inserted.any())  # no gate in this comparison
        k, batch = self.k, token.shape[0]
        old_kv = self.attn.shape[1]
        kv = old_kv + k + 1
        self.attn = torch.cat([self.attn, self.attn.new_ones(batch, k + 1)], 1)
        old_cols, new_cols = slice(m_len, m_len + k), slice(old_kv, old_kv + k)
        lower = torch.zeros(1, k + 1, kv, dtype=torch.bool)
        lower[..., old_cols] = True
        lower[..., new_cols] = True
        upper = torch.zeros(1, k + 1, kv, dtype=torch.bool)
        upper[..., old_cols] = True
        upper[:, :k, m_len + k : old_kv] = True
        ids = torch.cat([torch.full((batch, k), self.placeholder), token[:, None]], 1)
        positions = torch.cat([lengths[:, None] + torch.arange(k), position[:, None]], 1)
        logits = self._forward(ids, positions, ForwardPlan(slice(0, k), new_bridge, lower, upper))
        for layer in self.cache.layers:  # the new bridge's entries over the old one's, then dropped where they were
            for name in ("keys", "values"):
                t = getattr(layer, name)
                t[:, :, old_cols] = t[:, :, new_cols]
                setattr(layer, name, torch.cat([t[:, :, : new_cols.start], t[:, :, new_cols.stop :]], dim=2))
        self.attn = self.attn[:, : old_kv + 1]
        self.hooks.captured = self.hooks.captured[:, -1:]
        return logits


@pytest.mark.parametrize(
    "family, attn, layers",
    [(f, "sdpa", dict(extract_layer=2)) for f in FAMILIES]
    + [("llama", "eager", dict(extract_layer=2)), ("llama", "sdpa", dict(extract_layer=3, insert_layer=1)),
       ("llama", "sdpa", dict(extract_layer=1, insert_layer=0)), ("gemma3", "sdpa", dict(extract_layer=3))],
)
def test_fast_refresh_skipping_lower_layers_equals_all_rows(family, attn, layers):
    backbone = tiny_backbone(family, attn=attn)
    module = make_module(backbone, **layers)
    ids, mask = left_pad(PROMPTS, 0)
    # Long enough to pass gemma3's sliding window (16) with the cache lengths of lower and upper layers differing.
    cfg = GenerationConfig(stop_at_eos=False, max_new_tokens=14, refresh_every=1, momentum=0.3)
    skip = GuidedDecoder(backbone, module, cfg).run(ids, mask, keep_logits=True)
    full = _AllRowsFastRefresh(backbone, module, cfg).run(ids, mask, keep_logits=True)
    assert skip.token_ids == full.token_ids
    for a, b in zip(skip.step_logits, full.step_logits):
        assert (a - b).abs().max() < 1e-4
    assert any(not torch.equal(skip.step_bridges[1], b) for b in skip.step_bridges[2:])


def test_guidance_off_matches_hf_generate_greedy(llama):
    ids, mask = left_pad(PROMPTS, 0)
    result = GuidedDecoder(llama, None, GenerationConfig(max_new_tokens=12, guidance=False, stop_at_eos=False)).run(
        ids, mask
    )
    with torch.no_grad():
        ref = llama.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                                   min_new_tokens=12, pad_token_id=0)
    assert result.token_ids == ref[:, ids.shape[1]:].tolist()


def test_zero_bridge_tokens_equals_unguided(llama):
    module = make_module(llama, num_bridge_tokens=0)
    _, _, guided = _run(llama, module, max_new_tokens=6)
    _, _, plain = _run(llama, None, max_new_tokens=6)
    assert guided.token_ids == plain.token_ids
    assert len(guided.telemetry[0].score) == 6  # the value space still scores every step


def test_refresh_uses_newest_state_and_momentum_one_freezes_bridge(llama):
    module = make_module(llama)
    _, _, moving = _run(llama, module, max_new_tokens=8, refresh_every=1, momentum=0.0)
    bridges = moving.step_bridges
    assert not torch.allclose(bridges[2], bridges[3])
    # With momentum 0 the refreshed bridge is exactly the bridge of the newest token's state: recompute it.
    assert not torch.allclose(bridges[0], bridges[-1])
    _, _, frozen = _run(llama, module, max_new_tokens=8, refresh_every=1, momentum=1.0)
    assert all(torch.equal(frozen.step_bridges[0], b) for b in frozen.step_bridges)


def test_refreshed_bridge_is_built_from_newest_token_state(llama):
    module = make_module(llama)
    ids, mask, res = _run(llama, module, max_new_tokens=4, refresh_every=1, momentum=0.0, refresh_mode="exact")
    gen = torch.tensor(res.token_ids)
    c = module.config
    with BackboneHooks(llama.layers, c.insert_layer, c.extract_layer, "sdpa") as hooks, torch.no_grad():
        # The bridge in force at step 2 was built from the state of token 0 (computed with the step-1 bridge).
        bridged_forward(llama.model, hooks, ids, mask, res.step_bridges[1], gen[:, :1])
        state = hooks.captured[:, -1]
        bridged_forward(llama.model, hooks, ids, mask, None, gen[:, :0])
        prompt_states = hooks.captured
        z = module.value_space.encode(state, prompt_states, mask.bool())
        dz, _ = module.value_space.correction(z)
        expected = module.bridge(state, dz)
    assert torch.allclose(res.step_bridges[2], expected, atol=1e-5)


def test_batched_equals_single(llama):
    module = make_module(llama)
    cfg = GenerationConfig(max_new_tokens=8, stop_at_eos=False, refresh_every=3)
    prompts = ["a longer prompt about cats", "short", "middle length one"]
    batched = generate(llama, module, prompts, cfg, batch_size=3)
    singles = [generate(llama, module, [p], cfg, batch_size=1) for p in prompts]
    assert batched.token_ids == [s.token_ids[0] for s in singles]
    for b, s in zip(batched.telemetry, singles):
        assert b.score == pytest.approx(s.telemetry[0].score, abs=1e-4)


def test_sampling_is_seeded_and_top_k_one_is_greedy(llama):
    module = make_module(llama)
    a = generate(llama, module, ["hello"], GenerationConfig(max_new_tokens=8, do_sample=True, seed=3,
                                                            temperature=1.5, top_p=0.9, stop_at_eos=False))
    b = generate(llama, module, ["hello"], GenerationConfig(max_new_tokens=8, do_sample=True, seed=3,
                                                            temperature=1.5, top_p=0.9, stop_at_eos=False))
    assert a.token_ids == b.token_ids
    greedy = generate(llama, module, ["hello"], GenerationConfig(max_new_tokens=8, stop_at_eos=False))
    topk1 = generate(llama, module, ["hello"], GenerationConfig(max_new_tokens=8, do_sample=True, top_k=1,
                                                                seed=0, stop_at_eos=False))
    assert greedy.token_ids == topk1.token_ids


def test_stops_at_eos_and_reports_reason(llama):
    module = make_module(llama)
    first = generate(llama, module, ["hello"], GenerationConfig(max_new_tokens=5, stop_at_eos=False))
    stop_id = first.token_ids[0][2]
    res = generate(llama, module, ["hello"],
                   GenerationConfig(max_new_tokens=5, stop_at_eos=True, extra_stop_token_ids=[stop_id]))
    cut = first.token_ids[0].index(stop_id)
    assert res.token_ids[0] == first.token_ids[0][:cut]
    assert res.finish_reasons == ["stop"]
    assert len(res.telemetry[0].score) == cut
    assert first.finish_reasons == ["length"] and len(first.token_ids[0]) == 5


def test_gate_leaves_every_prompt_alone_when_all_score_safe(llama):
    # Every prompt at or below the threshold: no bridge is built and no bridge forward runs; the answer is the
    # backbone's own, logits and all, and stays so through the refreshes (the gate keeps each row as it is).
    module = make_module(llama)
    _, _, res = _run(llama, module, max_new_tokens=6, refresh_every=1, gate_threshold=1e9)
    _, _, plain = _run(llama, None, max_new_tokens=6, guidance=False)
    assert res.token_ids == plain.token_ids
    assert all(torch.equal(a, b) for a, b in zip(res.step_logits, plain.step_logits))
    assert all(b is None for b in res.step_bridges)
    assert [t.bridged_at for t in res.telemetry] == [None, None]
    assert not any(r for t in res.telemetry for r in t.refreshed)


def test_module_gate_is_the_default_and_off_bridges_everything(llama):
    module = make_module(llama)
    module.config.gate_threshold = 1e9
    _, _, gated = _run(llama, module, max_new_tokens=4)
    _, _, plain = _run(llama, None, max_new_tokens=4, guidance=False)
    _, _, off = _run(llama, module, max_new_tokens=4, gate_threshold=float("-inf"))
    assert gated.token_ids == plain.token_ids
    assert [t.bridged_at for t in off.telemetry] == [0, 0]
    assert (off.step_logits[0] - plain.step_logits[0]).abs().max() > 1e-3


@pytest.mark.parametrize("family", FAMILIES)
def test_gate_splits_a_batch_row_by_row(family):
    # One prompt below the threshold, one above, in one batch: the gated row is the backbone's own answer, the other
    # is what it is without any gate.
    backbone = tiny_backbone(family)
    module = make_module(backbone)
    _, _, free = _run(backbone, module, max_new_tokens=6, gate_threshold=float("-inf"))
    scores = [t.bridge_score for t in free.telemetry]
    low, high = sorted(range(2), key=lambda r: scores[r])
    _, _, gated = _run(backbone, module, max_new_tokens=6, gate_threshold=(scores[low] + scores[high]) / 2)
    _, _, plain = _run(backbone, None, max_new_tokens=6, guidance=False)
    assert gated.token_ids[low] == plain.token_ids[low]
    assert gated.token_ids[high] == free.token_ids[high]
    for a, b, c in zip(gated.step_logits, plain.step_logits, free.step_logits):
        assert (a[low] - b[low]).abs().max() < 1e-4 and (a[high] - c[high]).abs().max() < 1e-4
    assert gated.telemetry[low].bridged_at is None and gated.telemetry[high].bridged_at == 0


class _UnsafeFirstRow(GuidedDecoder):
    """Every observed response state reads unsafe in row 0 and safe in row 1 (scripted scores), so that a refresh
    inserts a bridge into row 0 after the gate let its prompt through."""

    def _observe(self, state):
        z, _, state = super()._observe(state)
        return z, torch.tensor([100.0, -100.0]), state


def _late_bridge_forward(backbone, hooks, ids, mask, bridge, gen, at):
    """Cache-free reference for a bridge inserted before response token `at`: `[prompt | gen[:at] | bridge |
    gen[at:]]` at consecutive honest positions; layers below the insert layer never see the bridge, and the bridge
    rows see only the prompt and each other, as in the decoder."""
    from svgt.hooks import bridge_block, padded_positions

    batch, m_len = ids.shape
    k = bridge.shape[1]
    seq = torch.cat([ids, gen[:, :at], torch.zeros(batch, k, dtype=torch.long), gen[:, at:]], 1)
    rest = seq.shape[1] - m_len
    attn = torch.cat([mask, torch.ones(batch, rest, dtype=mask.dtype)], 1)
    positions = torch.cat([padded_positions(mask), mask.sum(-1, keepdim=True) + torch.arange(rest)], 1)
    total, cols = seq.shape[1], slice(m_len + at, m_len + at + k)
    upper = torch.zeros(1, total, total, dtype=torch.bool)
    upper[:, cols, m_len : m_len + at] = True
    hooks.plan = ForwardPlan(cols, bridge, bridge_block(total, total, cols, torch.device("cpu")), upper)
    try:
        return backbone.model(input_ids=seq, attention_mask=attn, position_ids=positions, use_cache=False).logits
    finally:
        hooks.plan = None


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_refresh_inserts_a_bridge_into_a_gated_row_that_drifts_unsafe(llama, mode):
    module = make_module(llama)
    ids, mask = left_pad(PROMPTS, 0)
    _, _, free = _run(llama, module, max_new_tokens=1, gate_threshold=float("-inf"))
    threshold = max(t.bridge_score for t in free.telemetry) + 1.0  # both prompts gated
    cfg = GenerationConfig(stop_at_eos=False, max_new_tokens=7, refresh_every=3, refresh_mode=mode,
                           gate_threshold=threshold)
    res = _UnsafeFirstRow(llama, module, cfg).run(ids, mask, keep_logits=True)
    _, _, plain = _run(llama, None, max_new_tokens=7, guidance=False)
    assert [t.bridged_at for t in res.telemetry] == [4, None]  # the refresh after token 3 feeds token 4
    assert res.telemetry[0].refreshed[4] and not any(res.telemetry[1].refreshed)
    for t in range(7):  # row 1 stays the backbone's own; row 0 too, up to the insertion
        assert (res.step_logits[t][1] - plain.step_logits[t][1]).abs().max() < 1e-4
        if t < 4:
            assert (res.step_logits[t][0] - plain.step_logits[t][0]).abs().max() < 1e-4
    gen = torch.tensor(res.token_ids)
    c = module.config
    with BackboneHooks(llama.layers, c.insert_layer, c.extract_layer, "sdpa") as hooks, torch.no_grad():
        for t in range(4, 7):
            bridge = res.step_bridges[t]
            if mode == "exact":  # recomputed as if the bridge had followed the prompt from the start
                ref = bridged_forward(llama.model, hooks, ids, mask, bridge, gen[:, :t]).logits
            else:  # inserted where the response was
                ref = _late_bridge_forward(llama, hooks, ids, mask, bridge, gen[:, :t], 3)
            assert (ref[0, -1] - res.step_logits[t][0]).abs().max() < 1e-4
    assert (res.step_logits[4][0] - plain.step_logits[4][0]).abs().max() > 1e-3  # the bridge reached the output


def test_gate_flags_refresh_per_row(llama):
    module = make_module(llama)
    _, _, free = _run(llama, module, max_new_tokens=8, refresh_every=1, telemetry=True)
    scores = sorted(s for t in free.telemetry for s in t.score)
    _, _, res = _run(llama, module, max_new_tokens=8, refresh_every=1, telemetry=True,
                     gate_threshold=scores[len(scores) // 2])
    flags = [t.refreshed for t in res.telemetry]
    assert any(a != b for a, b in zip(*flags)), "the threshold should split the two rows at some step"
    for step in range(1, 8):
        for row in range(2):
            moved = not torch.equal(res.step_bridges[step - 1][row], res.step_bridges[step][row])
            assert flags[row][step] == moved  # entry t: the forward that produced step t's logits and bridge


def test_first_bridge_comes_from_the_most_unsafe_paragraph(llama):
    module = make_module(llama)
    paragraphs = ["a long benign document about cats and dogs", "zq", "a request"]
    prompt = "\n\n".join(paragraphs)
    cfg = dict(max_new_tokens=2, stop_at_eos=False)
    whole = generate(llama, module, [prompt], GenerationConfig(score_paragraphs=False, **cfg), keep_logits=True)
    alone = [generate(llama, module, [p], GenerationConfig(**cfg), keep_logits=True) for p in paragraphs]
    scored = generate(llama, module, [prompt, "no paragraphs"], GenerationConfig(**cfg), keep_logits=True)
    candidates = [whole] + alone
    best = max(candidates, key=lambda r: r.telemetry[0].bridge_score)
    assert scored.telemetry[0].bridge_score == pytest.approx(best.telemetry[0].bridge_score, abs=1e-5)
    assert torch.allclose(scored.step_bridges[0][0], best.step_bridges[0][0], atol=1e-5)
    assert best is not whole, "pick a prompt where a paragraph outscores the whole, or the test proves nothing"
    # A one-paragraph prompt in the same batch is untouched.
    single = generate(llama, module, ["no paragraphs"], GenerationConfig(**cfg))
    assert scored.telemetry[1].bridge_score == pytest.approx(single.telemetry[0].bridge_score, abs=1e-5)


def test_the_last_sentence_is_scored_on_its_own(llama):
    # On, whichever of the whole prompt and its last sentence scores higher builds the first bridge; off (the
    # shipped modules' setting), only the whole.
    module = make_module(llama)
    cfg = dict(max_new_tokens=2, stop_at_eos=False)
    for tail in ("a request", "zq zq zq"):
        prompt = f"a long benign document about cats and dogs. Now the question: {tail}"
        whole = generate(llama, module, [prompt], GenerationConfig(**cfg))
        alone = generate(llama, module, [tail], GenerationConfig(**cfg))
        scored = generate(llama, module, [prompt], GenerationConfig(score_last_sentence=True, **cfg))
        s_whole, s_alone = whole.telemetry[0].bridge_score, alone.telemetry[0].bridge_score
        assert s_whole != pytest.approx(s_alone, abs=1e-6)  # else the test could not tell which was taken
        assert scored.telemetry[0].bridge_score == pytest.approx(max(s_whole, s_alone), abs=1e-7)
        # A module that scores the last sentence (its gate was chosen so) does it unless the run says otherwise.
        module.config.score_last_sentence = True
        own = generate(llama, module, [prompt], GenerationConfig(**cfg))
        off = generate(llama, module, [prompt], GenerationConfig(score_last_sentence=False, **cfg))
        module.config.score_last_sentence = False
        assert own.telemetry[0].bridge_score == pytest.approx(max(s_whole, s_alone), abs=1e-7)
        assert off.telemetry[0].bridge_score == pytest.approx(s_whole, abs=1e-7)


class _ScriptedScores(GuidedDecoder):
    """Every observed response state scores `self.scores` (one per row)."""

    scores = (0.0, 0.0)

    def _observe(self, state):
        z, _, state = super()._observe(state)
        return z, torch.tensor(self.scores), state


def test_a_refresh_bridges_a_gated_row_only_past_the_insertion_threshold(llama):
    module = make_module(llama)
    ids, mask = left_pad(PROMPTS, 0)
    _, _, free = _run(llama, module, max_new_tokens=1, gate_threshold=float("-inf"))
    gate = max(t.bridge_score for t in free.telemetry) + 1.0  # both prompts gated
    _ScriptedScores.scores = (gate + 0.5, gate - 10.0)  # row 0's response scores above the gate, row 1's below
    for insert, expected in ((gate + 1.0, [None, None]), (gate, [4, None])):
        cfg = GenerationConfig(stop_at_eos=False, max_new_tokens=7, refresh_every=3, gate_threshold=gate,
                               refresh_insert_threshold=insert)
        res = _ScriptedScores(llama, module, cfg).run(ids, mask)
        assert [t.bridged_at for t in res.telemetry] == expected
    # By default a gated row waits until its response reads unsafe (s > 0), whatever a lower gate says.
    default = GuidedDecoder(llama, module, GenerationConfig(refresh_every=3))
    assert default._insert_threshold(-4.0) == 0.0 and default._insert_threshold(2.0) == 2.0


def test_decoding_encodes_against_a_prompt_memory_built_once_per_batch(llama, monkeypatch):
    """Each step's value state comes from the prompt's keys and values projected once (`ValueSpace.prompt_memory`),
    and equals what the plain `encode` over the prompt's states gives: same tokens, same scores."""
    module = with_conditional_path(make_module(llama))
    cfg = dict(max_new_tokens=8, refresh_every=1, momentum=0.0, telemetry=True, gate_threshold=float("-inf"))
    vs = module.value_space
    calls = []
    build = vs.prompt_memory
    monkeypatch.setattr(vs, "prompt_memory", lambda *a: calls.append(1) or build(*a))
    _, _, fast = _run(llama, module, **cfg)
    assert len(calls) == 1
    monkeypatch.setattr(vs, "encode_step", lambda h, memory: pytest.fail("the plain path was expected"))
    vs.train()  # with dropout possible, the decoder encodes the plain way
    try:
        _, _, plain = _run(llama, module, **cfg)
    finally:
        vs.eval()
    assert fast.token_ids == plain.token_ids
    for a, b in zip(fast.telemetry, plain.telemetry):
        assert a.score == pytest.approx(b.score, abs=1e-5)
    # The conditional path counts here: without it the scores differ.
    _, _, without = _run(llama, make_module(llama), **cfg)
    assert any(abs(a - b) > 1e-3 for a, b in zip(fast.telemetry[0].score, without.telemetry[0].score))


def test_an_ensemble_of_value_spaces_scores_the_gate_and_builds_the_bridge(llama):
    from svgt.generation import encode_prompt
    from svgt.module import join_value_spaces

    main, other = make_module(llama), with_conditional_path(make_module(llama, seed=2))
    module = join_value_spaces(main, [other.value_space], [[0.0, 1.0], [0.3, 0.5]]).eval()
    ids, mask, free = _run(llama, module, max_new_tokens=6, refresh_every=2, refresh_mode="exact",
                           gate_threshold=float("-inf"))
    with BackboneHooks(llama.layers, 2, 2, "sdpa") as hooks, torch.no_grad():
        bridged_forward(llama.model, hooks, ids, mask, None, ids[:, :0])
        states = hooks.captured.float()
        ensemble = module.judge.score(encode_prompt(module, states, mask.bool())[1])
        alone = main.value_space.score(encode_prompt(main, states, mask.bool())[1])
    scores = torch.tensor([t.bridge_score for t in free.telemetry])
    assert torch.allclose(scores, ensemble, atol=1e-4) and not torch.allclose(scores, alone, atol=1e-3)
    assert _recompute_error(llama, module, ids, mask, free) < 1e-4  # bridges from the ensemble's Δz, cache exact
    low, high = sorted(range(2), key=lambda r: scores[r])
    _, _, gated = _run(llama, module, max_new_tokens=6, gate_threshold=float(scores.mean()))
    _, _, plain = _run(llama, None, max_new_tokens=6, guidance=False)
    assert gated.token_ids[low] == plain.token_ids[low] and gated.telemetry[high].bridged_at == 0


def _head_rows(backbone):
    """Records the rows the LM head computes in each forward (its input's second-to-last dimension)."""
    rows = []
    handle = backbone.model.get_output_embeddings().register_forward_hook(
        lambda mod, args, out: rows.append(out.shape[-2]))
    return rows, handle


@pytest.mark.parametrize("family", FAMILIES)
def test_a_bridged_prompt_forward_skips_the_lm_head_and_changes_nothing(family):
    # The prompt forward's logits are read only for rows the gate lets through. Once the model's head has been seen
    # to give its own logits when called directly (the first guided run checks), the prompt forward hands the head
    # no rows, and a gated row's logits come from the head afterwards: every token and logit as before.
    from svgt import generation

    backbone = tiny_backbone(family)
    module = make_module(backbone)
    _, _, free = _run(backbone, module, max_new_tokens=4, gate_threshold=float("-inf"))
    assert generation._DIRECT_HEAD[backbone.model] is True
    scores = sorted(t.bridge_score for t in free.telemetry)
    for gate in (float("-inf"), sum(scores) / 2, 1e9):  # every row bridged, one of two, none
        generation._DIRECT_HEAD[backbone.model] = False
        _, _, full = _run(backbone, module, max_new_tokens=4, gate_threshold=gate)
        generation._DIRECT_HEAD[backbone.model] = True
        rows, handle = _head_rows(backbone)
        try:
            _, _, skipped = _run(backbone, module, max_new_tokens=4, gate_threshold=gate)
        finally:
            handle.remove()
        assert rows[0] == 0, "the prompt forward computed logits"
        assert skipped.token_ids == full.token_ids
        assert all(torch.equal(a, b) for a, b in zip(skipped.step_logits, full.step_logits))


def test_a_head_whose_logits_the_model_changes_afterwards_runs_in_the_forward():
    # Gemma 2 and 3 can cap their logits after the head (final_logit_softcapping): the head called alone gives other
    # logits, so the first guided run finds that out and the prompt forward keeps computing them.
    from svgt import generation

    backbone = tiny_backbone("gemma3")
    backbone.model.config.final_logit_softcapping = 0.5
    module = make_module(backbone)
    rows, handle = _head_rows(backbone)
    try:
        _run(backbone, module, max_new_tokens=2, gate_threshold=float("-inf"))
        _, _, second = _run(backbone, module, max_new_tokens=2, gate_threshold=1e9)
    finally:
        handle.remove()
    assert generation._DIRECT_HEAD[backbone.model] is False
    assert rows.count(0) == 0
    _, _, plain = _run(backbone, None, max_new_tokens=2, guidance=False)
    assert all(torch.equal(a, b) for a, b in zip(second.step_logits, plain.step_logits))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("layers", [dict(extract_layer=2), dict(extract_layer=3, insert_layer=1)])
def test_the_first_bridge_forward_reads_no_weights_below_the_insert_layer(family, layers, monkeypatch):
    # Every row of the first bridge's forward is a Bridge Token, so below the insert layer its work is masked for
    # every query and overwritten: the linear maps there are handed no rows, and nothing else changes.
    import contextlib

    from svgt import generation, hooks

    backbone = tiny_backbone(family)
    module = make_module(backbone, **layers)
    lower = backbone.layers[: module.config.insert_layer]
    linears = sum(type(m) in (torch.nn.Linear, Conv1D) for layer in lower for m in layer.modules())  # plain ones
    opened: list[hooks.IdleLinears] = []

    def idle(modules):
        opened.append(hooks.IdleLinears(modules))
        return opened[-1]

    _, _, free = _run(backbone, module, max_new_tokens=2, gate_threshold=float("-inf"))
    scores = sorted(t.bridge_score for t in free.telemetry)
    for gate in (float("-inf"), sum(scores) / 2):  # every row bridged, one of two
        opened.clear()
        monkeypatch.setattr(generation, "IdleLinears", idle)
        _, _, skipped = _run(backbone, module, max_new_tokens=5, refresh_every=2, gate_threshold=gate)
        monkeypatch.setattr(generation, "IdleLinears", lambda modules: contextlib.nullcontext())
        _, _, full = _run(backbone, module, max_new_tokens=5, refresh_every=2, gate_threshold=gate)
        assert len(opened) == 1 and opened[0].idled == linears  # each lower linear map once
        assert skipped.token_ids == full.token_ids
        assert all(torch.equal(a, b) for a, b in zip(skipped.step_logits, full.step_logits))
        assert all(torch.equal(a, b) for a, b in zip(skipped.step_bridges, full.step_bridges))
    assert linears > 0


def test_idle_linears_answer_zeros_of_the_shape_asked_and_let_go_on_exit():
    linear = torch.nn.Linear(4, 3)
    block = torch.nn.Sequential(linear, torch.nn.ReLU())
    x = torch.randn(2, 5, 4)
    with IdleLinears([block]) as idle:
        assert torch.equal(block(x), torch.zeros(2, 5, 3))
        assert linear(torch.randn(4)).shape == (3,)  # a lone vector has no rows to withhold: it runs
    assert idle.idled == 1
    gpt2_block = torch.nn.Sequential(Conv1D(3, 4))  # GPT-2's: (nx, nf) weight
    with IdleLinears([gpt2_block]) as idle:
        assert torch.equal(gpt2_block(x), torch.zeros(2, 5, 3))
    assert idle.idled == 1

    class QuantisedLinear(torch.nn.Linear):  # a subclass's kernel may not take zero rows: it runs as it is
        pass

    custom = QuantisedLinear(4, 3)
    with IdleLinears([custom]) as idle:
        assert torch.equal(custom(x), torch.nn.functional.linear(x, custom.weight, custom.bias))
    assert idle.idled == 0
    assert torch.equal(block(x), torch.relu(linear(x)))
