"""`SVGTModel` (the transformers/PEFT-shaped entry point) and `TextStream` (streaming in Python), on tiny models."""

import pytest
import torch
from conftest import make_module
from tiny import save_tiny_hf_backbone

from svgt import GenerationConfig, SVGTModel, generate, save_pretrained
from svgt.model import builtin_name


@pytest.fixture
def hf_model(tmp_path):
    """A transformers model and a real tokenizer with a chat template, loaded as a user would, plus an artifact."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from svgt import load_backbone

    path = save_tiny_hf_backbone(tmp_path / "tiny")
    bb = load_backbone(path)
    save_pretrained(make_module(bb, gate_init=2.0), tmp_path / "vm", bb)
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path), tmp_path / "vm"


PROMPTS = ["hello world how are you", [{"role": "user", "content": "tell me a story"}], "cat"]


@pytest.mark.parametrize("settings", [dict(), dict(refresh_every=2), dict(guidance=False),
                                      dict(do_sample=True, temperature=0.8, top_p=0.9, top_k=20, seed=3)])
def test_from_pretrained_generates_what_svgt_generate_does(hf_model, settings):
    model, tokenizer, artifact = hf_model
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    guided = SVGTModel.from_pretrained(model, artifact, tokenizer=tokenizer)
    assert guided.model is model and not any(p.requires_grad for p in model.parameters())
    texts = guided.generate(PROMPTS, max_new_tokens=6, **settings)
    ref = generate(guided.backbone, guided.value_module, PROMPTS, GenerationConfig(max_new_tokens=6, **settings))
    assert texts == ref.texts
    if not settings.get("do_sample"):  # a sampled row alone draws other random numbers than inside a batch
        assert guided.generate(PROMPTS[1], max_new_tokens=6, **settings) == ref.texts[1]  # one messages list: one text
    result = guided.generate(PROMPTS, max_new_tokens=6, return_result=True, **settings)
    assert result.token_ids == ref.token_ids
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_from_pretrained_explains_what_is_missing(hf_model):
    model, tokenizer, _ = hf_model
    with pytest.raises(ValueError, match="tokenizer="):
        SVGTModel.from_pretrained(model)
    with pytest.raises(FileNotFoundError, match="no value module is shipped"):
        SVGTModel.from_pretrained(model, tokenizer=tokenizer)
    guided = SVGTModel.from_pretrained(model, tokenizer=tokenizer, allow_untrained=True, margin=2.0)
    assert guided.value_module.config.margin == 2.0 and not guided.guided.trained
    with pytest.raises(TypeError, match="max_tokens.*accepted: .*max_new_tokens"):
        guided.generate("hi", max_tokens=3)


def test_builtin_name_recognises_hub_ids_and_converted_folders():
    def model(path):
        return type("M", (), {"config": type("C", (), {"name_or_path": path})()})()

    assert builtin_name(model("HuggingFaceTB/SmolLM2-135M-Instruct")) == "smollm2-135m-instruct"
    assert builtin_name(model("/home/u/.cache/svgt/backbones/smollm2-135m-instruct-0.1.2-fp32")) == \
        "smollm2-135m-instruct"
    assert builtin_name(model("my/own-model")) is None


@pytest.mark.parametrize("settings", [dict(), dict(refresh_every=2), dict(guidance=False), dict(max_new_tokens=3)])
def test_stream_chunks_join_to_the_generated_text_with_telemetry_per_token(hf_model, settings):
    model, tokenizer, artifact = hf_model
    guided = SVGTModel.from_pretrained(model, artifact, tokenizer=tokenizer)
    settings = {"max_new_tokens": 8, **settings}
    for prompt in PROMPTS:
        ref = guided.generate(prompt, return_result=True, **settings)
        stream = guided.stream(prompt, **settings)
        chunks = list(stream)
        assert "".join(c.text for c in chunks) == ref.texts[0] == stream.text
        assert [c.index for c in chunks] == list(range(len(chunks)))
        assert [c.token_id for c in chunks][: len(ref.token_ids[0])] == ref.token_ids[0]
        assert stream.finish_reason == ref.finish_reasons[0] == chunks[-1].finish_reason
        if settings.get("guidance", True):
            assert [c.score for c in chunks[: len(ref.telemetry[0].score)]] == pytest.approx(ref.telemetry[0].score,
                                                                                              abs=1e-5)
        else:
            assert all(c.score is None for c in chunks)


def test_breaking_out_of_a_stream_stops_decoding(hf_model):
    model, tokenizer, artifact = hf_model
    guided = SVGTModel.from_pretrained(model, artifact, tokenizer=tokenizer)
    stream = guided.stream("hello world", max_new_tokens=50, stop_at_eos=False)
    for i, _ in enumerate(stream):
        if i == 1:
            break
    stream._thread.join(timeout=10)
    assert not stream._thread.is_alive() and len(stream._text.ids) < 50
    with pytest.raises(ValueError, match="one prompt"):
        guided.stream(["a", "b"])
