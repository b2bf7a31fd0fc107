"""Continuous batching: rows that join a running batch mid-flight, and leave it early, get exactly the tokens they
would get alone (greedy), on every tiny family, with and without the gate and fast refresh."""

import pytest
import torch
from conftest import make_module, with_conditional_path
from tiny import FAMILIES, tiny_backbone

from svgt import GenerationConfig
from svgt.continuous import ContinuousBatch
from svgt.generation import GuidedDecoder
from svgt.prompts import left_pad

PROMPTS = [
    [2, 5, 6, 7, 8, 9, 10, 11],
    [2, 12, 13, 14],
    [2, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24],  # longer than every running prompt when it joins
    [2, 25, 26],
]
ARRIVALS = {0: [0], 2: [1, 2], 5: [3]}  # step -> prompts that join before it
TOKENS = [8, 3, 9, 6]  # each row leaves after this many tokens (row 1 leaves as row 3 joins)


def _alone(backbone, module, i, **cfg):
    ids, mask = left_pad([PROMPTS[i]], 0)
    config = GenerationConfig(stop_at_eos=False, max_new_tokens=TOKENS[i], **cfg)
    return GuidedDecoder(backbone, module, config).run(ids, mask).token_ids[0]


def _continuous(backbone, module, check=None, left=None, **cfg):
    """Run ARRIVALS through one ContinuousBatch; per prompt, its tokens. `check(batch, rows, out)` runs after every
    leave; `left` (a dict), if given, gets each prompt's telemetry as it leaves."""
    out = {i: [] for i in range(len(PROMPTS))}
    rows: list[int] = []
    with ContinuousBatch(backbone, module, GenerationConfig(stop_at_eos=False, **cfg)) as batch:
        for step in range(max(ARRIVALS) + max(TOKENS) + 1):
            if step in ARRIVALS:
                ids, mask = left_pad([PROMPTS[i] for i in ARRIVALS[step]], 0)
                batch.join(ids, mask, max_new_tokens=[TOKENS[i] for i in ARRIVALS[step]])
                rows += ARRIVALS[step]
            if not rows:
                continue
            for row, token in zip(rows, batch.pick().tolist()):
                out[row].append(token)
            done = [r for r, i in enumerate(rows) if len(out[i]) == TOKENS[i]]
            for r, row_telemetry in zip(done, batch.leave(done)):
                if left is not None:
                    left[rows[r]] = row_telemetry
            rows = [i for r, i in enumerate(rows) if r not in done]
            if check is not None:
                check(batch, rows, out)
            batch.advance()
        assert batch.size == 0
    return out


def _gate_between(backbone, module):
    """A threshold with prompts on both sides of it (their first-bridge scores, from a gate-free run)."""
    ids, mask = left_pad(PROMPTS, 0)
    cfg = GenerationConfig(stop_at_eos=False, max_new_tokens=1, gate_threshold=float("-inf"))
    scores = sorted(t.bridge_score for t in GuidedDecoder(backbone, module, cfg).run(ids, mask).telemetry)
    return (scores[1] + scores[2]) / 2


SETTINGS = {
    "unguided": dict(guidance=False),
    "bridged": dict(gate_threshold=float("-inf")),
    "bridged, fast refresh": dict(gate_threshold=float("-inf"), refresh_every=2, momentum=0.3),
    "gated, fast refresh": dict(refresh_every=2, refresh_insert_threshold=float("-inf")),
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_rows_joining_and_leaving_get_the_tokens_they_get_alone(family, setting):
    backbone = tiny_backbone(family)
    if family == "gemma3":  # a window no row's span reaches (what ContinuousBatch.fits checks; tested below)
        backbone.model.config.sliding_window = 64
    module = make_module(backbone)
    cfg = dict(SETTINGS[setting])
    if setting.startswith("gated"):
        # Two prompts gated, two bridged; every refresh inserts a bridge into a gated row (insert threshold -inf),
        # at that row's own step count.
        cfg["gate_threshold"] = _gate_between(backbone, module)
    out = _continuous(backbone, module, **cfg)
    for i in range(len(PROMPTS)):
        assert out[i] == _alone(backbone, module, i, **cfg), f"prompt {i}"


@pytest.mark.parametrize("spaces", [1, 2])
@pytest.mark.parametrize("setting", ["bridged, fast refresh", "gated, fast refresh"])
def test_rows_joining_and_leaving_keep_the_value_space_reading_their_own_prompt(llama, setting, spaces):
    # With a cross-attention that counts, each refresh's value state depends on the row's prompt: the decoder's
    # projected prompt memory (one per value space) must follow rows that join and leave.
    module = with_conditional_path(make_module(llama))
    if spaces == 2:
        from svgt.module import join_value_spaces

        other = with_conditional_path(make_module(llama, seed=4), seed=5).value_space
        module = join_value_spaces(module, [other], [[0.0, 1.0], [0.2, 0.5]]).eval()
    cfg = dict(SETTINGS[setting], telemetry=True)
    if setting.startswith("gated"):
        cfg["gate_threshold"] = _gate_between(llama, module)
    seen = {}
    out = _continuous(llama, module, left=seen, **cfg)
    for i in range(len(PROMPTS)):
        ids, mask = left_pad([PROMPTS[i]], 0)
        config = GenerationConfig(stop_at_eos=False, max_new_tokens=TOKENS[i], **cfg)
        alone = GuidedDecoder(llama, module, config).run(ids, mask)
        assert out[i] == alone.token_ids[0], f"prompt {i}"
        assert seen[i].score == pytest.approx(alone.telemetry[0].score, abs=1e-5), f"prompt {i}"


def test_leaving_rows_take_their_columns_with_them(llama):
    # Once only one row is left, the cache holds its prompt, the bridge and its own response so far: nothing of
    # the rows that came and went.
    module = make_module(llama)
    k = module.config.num_bridge_tokens
    sizes = []

    def check(batch, rows, out):
        if len(rows) == 1:
            i = rows[0]
            assert batch.columns == len(PROMPTS[i]) + k + len(out[i]) - 1
            sizes.append(batch.columns)

    _continuous(llama, module, check=check, gate_threshold=float("-inf"))
    assert sizes  # the check ran


def test_misuse_is_refused(llama):
    module = make_module(llama)
    with pytest.raises(ValueError, match="exact"):
        ContinuousBatch(llama, module, GenerationConfig(refresh_every=2, refresh_mode="exact"))
    ids, mask = left_pad(PROMPTS[:2], 0)
    with ContinuousBatch(llama, module, GenerationConfig()) as batch:
        batch.join(ids, mask)
        batch.pick()
        with pytest.raises(RuntimeError, match="between pick"):
            batch.join(ids, mask)
        with pytest.raises(RuntimeError, match="twice"):
            batch.pick()
        batch.advance()
        assert batch.logits.shape[0] == 2 and torch.isfinite(batch.logits).all()


def test_a_join_that_would_reach_the_sliding_window_does_not_fit():
    # Tiny Gemma 3 has a 16-column window: alone, the 11-token prompt with its bridge and 9 tokens already spans more.
    # A join is allowed only while every row's span after it stays inside the window.
    backbone = tiny_backbone("gemma3")
    module = make_module(backbone, gate_threshold=float("-inf"))
    k = module.config.num_bridge_tokens
    assert ContinuousBatch(backbone, module, GenerationConfig()).window == 16
    ids, mask = left_pad([PROMPTS[3]], 0)
    with ContinuousBatch(backbone, module, GenerationConfig(stop_at_eos=False)) as batch:
        assert batch.fits(len(PROMPTS[0]), 100)  # an empty batch takes anything
        batch.join(ids, mask, max_new_tokens=2)
        free = 16 - (len(PROMPTS[3]) + k)  # columns left in the window
        assert batch.fits(len(PROMPTS[3]), free - k)
        assert not batch.fits(len(PROMPTS[3]), free - k + 1)
        assert not batch.fits(len(PROMPTS[3]) + 1, free - k)  # a longer prompt widens every row
    assert ContinuousBatch(tiny_backbone("llama"), None, GenerationConfig()).window is None
