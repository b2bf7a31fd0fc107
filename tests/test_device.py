"""Device-aware tests: the same tiny random models on $SVGT_TEST_DEVICE (the CPU by default; scripts/gpu_check.sh
runs this file with SVGT_TEST_DEVICE=cuda), in float32 and bfloat16. Cached decoding must equal a full
recomputation within the dtype's tolerance (svgt.benchmark.exactness), and the three stages must step there with the
module in float32."""

import math

import pytest
import torch
from conftest import make_module
from tiny import tiny_backbone

from svgt import GenerationConfig
from svgt.benchmark.exactness import BFLOAT16_TOLERANCE, recompute_gap
from svgt.config import TrainConfig
from svgt.generation import GuidedDecoder
from svgt.prompts import left_pad
from svgt.training.activations import EncodedPair, compute_states
from svgt.training.loop import run_loop
from svgt.training.stages import Stage3Batcher, StateData, stage1_spec, stage2_spec, stage3_spec

PROMPTS = [[2, 5, 6, 7, 8, 9, 10, 11], [2, 12, 13, 14]]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _on(device, family="llama", dtype=torch.float32):
    backbone = tiny_backbone(family)
    backbone.model.to(device=device, dtype=dtype)
    module = make_module(backbone).to(device)  # float32 whatever the backbone's dtype
    return backbone, module


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("family", ["llama", "gemma3"])
@pytest.mark.parametrize("refresh", [dict(refresh_every=0), dict(refresh_every=2, refresh_mode="exact", momentum=0.3)])
def test_cached_decoding_equals_recomputation_on_the_device(svgt_device, dtype, family, refresh):
    backbone, module = _on(svgt_device, family, DTYPES[dtype])
    ids, mask = left_pad(PROMPTS, 0, svgt_device)
    gap = recompute_gap(backbone, module, ids, mask, GenerationConfig(max_new_tokens=9, **refresh))
    assert gap["steps"] == 9 and gap["ok"] and gap["visible"], gap


def test_bfloat16_greedy_tokens_agree_with_float32_on_the_device(svgt_device):
    """Token for token, up to the first step where float32's top two logits lie within bfloat16's tolerance of each
    other (there either token is right to within bfloat16's precision, and the rows may part)."""
    ids, mask = left_pad(PROMPTS, 0, svgt_device)
    cfg = GenerationConfig(max_new_tokens=6, stop_at_eos=False)
    runs = {}
    for name, dtype in DTYPES.items():
        backbone, module = _on(svgt_device, "llama", dtype)
        runs[name] = GuidedDecoder(backbone, module, cfg).run(ids, mask, keep_logits=True)
    full, half = runs["float32"], runs["bfloat16"]
    for row in range(len(PROMPTS)):
        for step, logits in enumerate(full.step_logits):
            top = logits[row].float().topk(2).values
            if top[0] - top[1] <= BFLOAT16_TOLERANCE * logits[row].abs().max():
                break
            assert half.token_ids[row][step] == full.token_ids[row][step], (row, step)
        assert step > 0, "float32's first choice was already a near tie: nothing compared"


def test_three_stages_step_on_the_device_with_a_bfloat16_backbone(svgt_device):
    backbone, module = _on(svgt_device, "llama", torch.bfloat16)
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    pairs = [EncodedPair([2] + [3 + (7 * i + j) % 90 for j in range(6 + i % 5)], [3 + (5 * i + j) % 90 for j in
                                                                                     range(4)]) for i in range(16)]
    labels = torch.tensor([i % 2 for i in range(16)])
    states = compute_states(backbone, module.config.extract_layer, pairs)
    data = StateData(states, labels)
    cfg = TrainConfig(stage1_epochs=2, stage2_epochs=2, stage3_epochs=2, stage1_batch=8, stage2_batch=8,
                      stage3_batch=4, stage3_lr=1e-2)
    module.train()
    for spec in (stage1_spec(module, data, data, cfg), stage2_spec(module, data, data, cfg)):
        history = run_loop(module, spec, progress=False)
        assert all(math.isfinite(r["loss"]) for r in history)
    bridge = {k: v.clone() for k, v in module.bridge.state_dict().items()}
    idx = torch.arange(len(pairs))
    history = run_loop(module, stage3_spec(Stage3Batcher(backbone, module, pairs, cfg), idx[:4], idx[4:], cfg),
                       progress=False)
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["val_ce"]) for r in history)
    assert any(not torch.equal(bridge[k], v) for k, v in module.bridge.state_dict().items())
    assert {(p.dtype, p.device.type) for p in module.parameters()} == {(torch.float32, svgt_device.type)}
    assert all(torch.equal(before[k], v) for k, v in backbone.model.state_dict().items())
