"""A base model's prompt format (`svgt.prompts.PromptFormat`): set on the tokenizer of a built-in base backbone however
it was loaded, and used the same way by training, generation, streaming, evaluation and serving, with the answer
cut at the format's stop strings. On a tiny random model loaded under the built-in name "gemma-3-270m"."""

import dataclasses

import pytest
from conftest import make_module
from tiny import save_tiny_hf_backbone

from svgt import GenerationConfig, generate, load_backbone
from svgt.backbone import wrap_backbone
from svgt.prompts import QUESTION_ANSWER, encode_prompts, format_prompt

PROMPT = "hello world how are you"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny model whose tokenizer has no chat template, like the Gemma GGUF's."""
    return save_tiny_hf_backbone(tmp_path_factory.mktemp("bb") / "tiny", chat_template=False)


@pytest.fixture
def gemma(folder):
    """The tiny model wrapped under the built-in base backbone's name, as `load_backbone("gemma-3-270m")` wraps it."""
    bb = load_backbone(folder)
    return wrap_backbone(bb.model, bb.tokenizer, name="gemma-3-270m", path=folder)


def _texts_and_ids(bb, prompts, **cfg):
    return generate(bb, make_module(bb, gate_init=2.0), prompts, GenerationConfig(**cfg))


def _stop_inside(bb, ids: list[int], at: int, offset: int) -> str:
    """A stop string that starts `offset` characters into token `at` of `ids` and runs into the next token."""
    tok = bb.tokenizer
    start = len(tok.decode(ids[:at], skip_special_tokens=True)) + offset
    return tok.decode(ids[: at + 2], skip_special_tokens=True)[start:]


def _expected_cut(bb, ids: list[int], text: str, stop: str) -> tuple[list[int], str]:
    """What a stop string leaves, computed the plain way: the text before it, and the fewest tokens that reach it."""
    end = text.find(stop)
    n = next(n for n in range(len(ids) + 1) if len(bb.tokenizer.decode(ids[:n], skip_special_tokens=True)) >= end)
    return ids[:n], text[:end]


def test_builtin_base_backbone_gets_its_format_however_it_was_loaded(folder, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    plain = load_backbone(folder)
    assert plain.stop_strings == () and not plain.tokenizer.chat_template  # any other model: left as it is
    for name, model_path in [("gemma-3-270m", folder), ("google/gemma-3-270m", folder),
                             ("custom", "/home/u/.cache/svgt/backbones/gemma-3-270m-1.0.0-fp32")]:
        model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
        model.config.name_or_path = model_path  # a converted folder is recognised by its name
        bb = wrap_backbone(model, tok, name=name)
        assert bb.tokenizer.chat_template == QUESTION_ANSWER.chat_template, name
        assert bb.stop_strings == ("\nQuestion:",)
        assert format_prompt(tok, PROMPT) == f"<s>Question: {PROMPT}\nAnswer:\n"
    # A tokenizer's own template gives way to the built-in's format (the hub's Gemma tokenizer has Gemma's turns,
    # which the base model never learnt); the chat model's own template stays.
    templated = save_tiny_hf_backbone(tmp_path / "templated")
    own = load_backbone(templated).tokenizer.chat_template
    assert wrap_backbone(*_model_and_tokenizer(templated), name="google/gemma-3-270m").tokenizer.chat_template == \
        QUESTION_ANSWER.chat_template
    assert wrap_backbone(*_model_and_tokenizer(templated), name="smollm2-135m-instruct").tokenizer.chat_template == own


def _model_and_tokenizer(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def test_format_renders_system_and_earlier_turns_and_refuses_other_roles(gemma):
    tok = gemma.tokenizer
    chat = [{"role": "system", "content": "Be safe."}, {"role": "user", "content": "Hi?"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "And now?"}]
    assert format_prompt(tok, chat) == "<s>Be safe.\n\nQuestion: Hi?\nAnswer:\nHello.\nQuestion: And now?\nAnswer:\n"
    assert format_prompt(tok, PROMPT, chat_template=False) == PROMPT
    with pytest.raises(Exception, match="roles system, user and assistant"):
        format_prompt(tok, [{"role": "tool", "content": "x"}])


def test_training_evaluation_and_generation_encode_prompts_alike(gemma):
    from svgt.evaluation.fluency import _encode
    from svgt.training.activations import encode_pair

    tok = gemma.tokenizer
    ids, _ = encode_prompts(tok, [PROMPT])
    expected = tok(f"<s>Question: {PROMPT}\nAnswer:\n", add_special_tokens=False)["input_ids"]
    assert ids[0].tolist() == expected and expected.count(tok.bos_token_id) == 1
    pair = encode_pair(gemma, PROMPT, "how are you", max_prompt=512, max_response=16)
    assert pair.prompt_ids == expected  # stages 1-3 read the states generation reads
    assert pair.response_ids == tok("how are you", add_special_tokens=False)["input_ids"]
    context, answer = _encode(gemma, PROMPT, "how are you", chat_template=True)  # fluency (PPL) in the same place
    assert (context, answer) == (pair.prompt_ids, pair.response_ids)


@pytest.mark.parametrize("offset", [0, 1], ids=["at-a-token", "inside-a-token"])
def test_generation_stops_at_a_stop_string_and_cuts_the_text_before_it(gemma, offset):
    prompts = [PROMPT, "tell me a story about a cat"]
    full = _texts_and_ids(gemma, prompts, max_new_tokens=12, stop_strings=[])
    ids = full.token_ids[0]
    at = next((i for i in range(2, len(ids) - 2) if len(gemma.tokenizer.decode([ids[i]])) > offset), None)
    assert at is not None, f"no token of more than {offset} characters in {ids}"
    stop = _stop_inside(gemma, ids, at, offset)
    if stop in full.texts[1]:
        pytest.fail(f"pick another prompt: the stop string {stop!r} is in both rows")
    backbone = dataclasses.replace(gemma, stop_strings=(stop, "never-there"))  # as a prompt format would set them
    res = _texts_and_ids(backbone, prompts, max_new_tokens=12)
    cut_ids, cut_text = _expected_cut(gemma, ids, full.texts[0], stop)
    assert len(cut_ids) == at + (offset > 0)  # the token the stop string starts inside adds text before it
    assert (gemma.tokenizer.decode(cut_ids) == cut_text) == (offset == 0)
    assert (res.token_ids[0], res.texts[0], res.finish_reasons[0]) == (cut_ids, cut_text, "stop")
    assert len(res.telemetry[0].score) == len(cut_ids)
    assert (res.token_ids[1], res.texts[1]) == (full.token_ids[1], full.texts[1])  # the other row goes on
    assert res.telemetry[1].score == pytest.approx(full.telemetry[1].score)
    # The stop strings belong to the format: a raw prompt, or a run that ignores stops, does not stop at them.
    raw = generate(backbone, make_module(backbone, gate_init=2.0), prompts,
                   GenerationConfig(max_new_tokens=12, stop_strings=[]), chat_template=False)
    assert generate(backbone, make_module(backbone, gate_init=2.0), prompts, GenerationConfig(max_new_tokens=12),
                    chat_template=False).texts == raw.texts
    assert _texts_and_ids(backbone, prompts, max_new_tokens=12, stop_at_eos=False).texts == full.texts


def test_stream_and_model_stop_where_generate_stops(gemma):
    from svgt.model import SVGTModel
    from svgt.pipeline import GuidedModel

    full = _texts_and_ids(gemma, [PROMPT], max_new_tokens=12, stop_strings=[])
    backbone = dataclasses.replace(gemma, stop_strings=(_stop_inside(gemma, full.token_ids[0], 3, 1),))
    guided = SVGTModel(GuidedModel(backbone, make_module(backbone, gate_init=2.0), None))
    ref = guided.generate(PROMPT, max_new_tokens=12, return_result=True)
    assert ref.finish_reasons == ["stop"] and ref.texts[0] != full.texts[0]
    stream = guided.stream(PROMPT, max_new_tokens=12)
    assert "".join(c.text for c in stream) == ref.texts[0] and stream.finish_reason == "stop"
    assert "".join(c.text for c in guided.stream(PROMPT, max_new_tokens=12, chat_template=False)) == \
        guided.generate(PROMPT, max_new_tokens=12, chat_template=False)


def test_evaluation_methods_answer_in_the_format(gemma):
    from svgt.methods.base import PlainMethod, SystemPromptMethod

    method = SystemPromptMethod()
    method.backbone = gemma
    rendered = format_prompt(gemma.tokenizer, method.transform_prompt(PROMPT))
    assert rendered == f"<s>{SystemPromptMethod.PROMPT}\n\nQuestion: {PROMPT}\nAnswer:\n"
    full = generate(gemma, None, [PROMPT], GenerationConfig(max_new_tokens=10, guidance=False, stop_strings=[]))
    backbone = dataclasses.replace(gemma, stop_strings=(_stop_inside(gemma, full.token_ids[0], 3, 0),))
    plain = PlainMethod()
    plain.backbone = backbone
    out = plain.generate([PROMPT], max_new_tokens=10)
    assert out.texts == generate(backbone, None, [PROMPT], GenerationConfig(max_new_tokens=10, guidance=False)).texts
    assert out.texts[0] != full.texts[0] and out.new_tokens[0] < len(full.token_ids[0])


def test_server_chat_uses_the_format_and_its_stops_and_completions_stay_raw(gemma):
    openai = pytest.importorskip("openai")
    pytest.importorskip("fastapi")
    from svgt.pipeline import GuidedModel
    from svgt.serving import BackgroundServer, create_app

    module = make_module(gemma, gate_init=2.0)
    full = generate(gemma, module, [PROMPT], GenerationConfig(max_new_tokens=10, stop_strings=[]))
    backbone = dataclasses.replace(gemma, stop_strings=(_stop_inside(gemma, full.token_ids[0], 3, 0),))
    expected = generate(backbone, module, [PROMPT], GenerationConfig(max_new_tokens=10))
    raw = generate(backbone, module, [PROMPT], GenerationConfig(max_new_tokens=10), chat_template=False)
    assert expected.finish_reasons == ["stop"]
    with BackgroundServer(create_app(GuidedModel(backbone, module, None), model_name="m")) as srv:
        client = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="x", max_retries=0, timeout=30)
        chat = client.chat.completions.create(model="m", messages=[{"role": "user", "content": PROMPT}],
                                              max_tokens=10, temperature=0)
        assert chat.choices[0].message.content == expected.texts[0]
        assert chat.choices[0].finish_reason == "stop"
        assert chat.usage.prompt_tokens == encode_prompts(backbone.tokenizer, [PROMPT])[0].shape[1]
        streamed = client.chat.completions.create(model="m", messages=[{"role": "user", "content": PROMPT}],
                                                  max_tokens=10, temperature=0, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == expected.texts[0]
        completion = client.completions.create(model="m", prompt=PROMPT, max_tokens=10, temperature=0)
        assert completion.choices[0].text == raw.texts[0]


def test_decoding_a_stop_costs_nothing_without_stop_strings(gemma, monkeypatch):
    # A chat model (no stop strings) never decodes text while generating: only once per row at the end.
    calls = []
    decode = gemma.tokenizer.decode
    monkeypatch.setattr(gemma.tokenizer, "decode", lambda *a, **k: calls.append(1) or decode(*a, **k))
    generate(gemma, None, [PROMPT, "cat"], GenerationConfig(max_new_tokens=8, guidance=False, stop_strings=[]))
    assert len(calls) == 2
