"""Hard-negative mining: the score it ranks by is generation's, the picks are the top-scored, the file round-trips."""

import pytest
import torch
from conftest import make_module
from tiny import tiny_backbone

from svgt.config import GenerationConfig
from svgt.data import PairExample
from svgt.generation import generate
from svgt.training.activations import compute_states, encode_pair
from svgt.training.mining import (HardNegatives, heldout_prompts, load_hard_negatives, pick_hard_negatives,
                                  prompt_scores, save_hard_negatives)


def test_prompt_scores_are_the_first_bridge_scores_of_generation():
    bb = tiny_backbone("llama")
    module = make_module(bb, gate_init=0.0)
    prompts = ["How do I bake bread?", "hi", "Tell me about the history of the printing press in Europe."]
    states = compute_states(bb, module.config.extract_layer, [encode_pair(bb, p, None, 128, 0) for p in prompts])
    scores = prompt_scores(module, states, batch_size=2)  # a padded batch and a batch of one
    out = generate(bb, module, prompts, GenerationConfig(max_new_tokens=1), batch_size=1)
    expected = torch.tensor([t.bridge_score for t in out.telemetry])
    assert torch.allclose(scores, expected, atol=2e-2), (scores, expected)  # states are cached in fp16
    assert scores.std() > 0


def _candidates(n):
    return [PairExample(f"question {i:02d}", f"answer {i}", 0, "sharegpt_reserve") for i in range(n)]


def test_picks_are_the_top_scored_with_a_seeded_heldout_split():
    cands = _candidates(20)
    scores = torch.tensor([float(i % 10) for i in range(20)])  # ties: i and i + 10 score the same
    mined = pick_hard_negatives(cands, scores, n=6, heldout_fraction=1 / 3, seed=0)
    assert {p.prompt for p in mined.train + mined.heldout} == {f"question {i:02d}" for i in (7, 8, 9, 17, 18, 19)}
    assert len(mined.heldout) == 2 and not set(mined.train) & set(mined.heldout)
    assert mined.scores["question 19"] == 9.0
    again = pick_hard_negatives(list(reversed(cands)), scores.flip(0), n=6, heldout_fraction=1 / 3, seed=0)
    assert again.heldout == mined.heldout  # order of the input does not matter
    other_seeds = {tuple(pick_hard_negatives(cands, scores, 6, 1 / 3, seed=s).heldout) for s in range(5)}
    assert len(other_seeds) > 1
    with pytest.raises(ValueError, match="3 scores for 20 candidates"):
        pick_hard_negatives(cands, torch.zeros(3), 6, 0.1, 0)


def test_saved_picks_load_back_and_bad_rows_name_the_line(tmp_path):
    cands = _candidates(5)
    mined = HardNegatives(cands[:3], cands[3:], {p.prompt: float(i) for i, p in enumerate(cands)})
    path = tmp_path / "hard_negatives.jsonl"
    save_hard_negatives(path, mined)
    assert load_hard_negatives(path) == mined
    assert [p.prompt for p in heldout_prompts(mined)] == ["question 03", "question 04"]
    path.write_text(path.read_text() + '{"prompt": "x"}\n')
    with pytest.raises(ValueError, match=r"hard_negatives.jsonl:6: expected .*response"):
        load_hard_negatives(path)
