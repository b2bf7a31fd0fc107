import math

import pytest
import torch
from tiny import tiny_backbone

from svgt.evaluation.fluency import perplexity, protocol, response_nll

PROMPTS = ["hi", "a much longer prompt than the others", "mid one", "x"]
RESPONSES = ["ok then", "", "a long answer that goes on for a while", "y"]


def manual_nll(backbone, prompt, response):
    """One unpadded sequence, full logits: the response tokens' NLL given the (untemplated) prompt."""
    tok = backbone.tokenizer
    context, answer = tok(prompt)["input_ids"], tok(response, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = backbone.model(input_ids=torch.tensor([context + answer])).logits[0].double()
    logp = torch.log_softmax(logits, -1)
    return -sum(float(logp[len(context) - 1 + j, t]) for j, t in enumerate(answer)), len(answer)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_perplexity_matches_manual_computation(family):
    backbone = tiny_backbone(family)
    got = response_nll(backbone, PROMPTS, RESPONSES, batch_size=3)  # padded batches of mixed lengths
    want = [manual_nll(backbone, p, r) if r else (0.0, 0) for p, r in zip(PROMPTS, RESPONSES)]
    for (s, n), (ms, mn) in zip(got, want):
        assert n == mn and s == pytest.approx(ms, rel=1e-4, abs=1e-4)
    total = sum(s for s, _ in want) / sum(n for _, n in want)
    assert perplexity(backbone, PROMPTS, RESPONSES) == pytest.approx(math.exp(total), rel=1e-4)
    assert math.isnan(perplexity(backbone, ["a"], [""]))
    assert backbone.name in protocol(backbone)
