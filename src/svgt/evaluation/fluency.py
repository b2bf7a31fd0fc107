"""Fluency: perplexity of responses to benign prompts under a reference LM (default: the unguided backbone).

Guidance that breaks the language shows up here long before it shows in refusal rates. The response is scored as a
continuation of the chat-templated prompt, so the reference LM judges it in the same place the method produced it.
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from ..backbone import Backbone
from ..hooks import keep_logits, padded_positions
from ..prompts import format_prompt, has_chat_template

PROTOCOL = (
    "Perplexity under the reference LM {model}: each benign prompt's response is re-tokenised (no special tokens) "
    "and appended to the chat-templated prompt (user turn + generation prompt); the NLL of the response tokens only "
    "is summed over all responses and divided by their total token count, and PPL = exp of that token-weighted mean. "
    "Empty responses are left out. The interval is a percentile bootstrap over responses."
)


def protocol(backbone: Backbone) -> str:
    return PROTOCOL.format(model=backbone.name)


def _encode(backbone: Backbone, prompt: str, response: str, chat_template: bool) -> tuple[list[int], list[int]]:
    tok = backbone.tokenizer
    templated = chat_template and has_chat_template(tok)
    # A rendered template already carries its special tokens; a bare prompt gets the tokenizer's BOS, as in generation.
    context = list(tok(format_prompt(tok, prompt, chat_template), add_special_tokens=not templated)["input_ids"])
    answer = list(tok(response, add_special_tokens=False)["input_ids"]) if response else []
    return context, answer


@torch.inference_mode()
def response_nll(backbone: Backbone, prompts: list[str], responses: list[str], *, batch_size: int = 8,
                 chat_template: bool = True, progress: bool = True) -> list[tuple[float, int]]:
    """(summed NLL in nats, token count) of each response given its prompt; (0.0, 0) for an empty response."""
    rows = [_encode(backbone, p, r, chat_template) for p, r in zip(prompts, responses, strict=True)]
    out: list[tuple[float, int]] = [(0.0, 0)] * len(rows)
    todo = [i for i, (_, answer) in enumerate(rows) if answer]
    pad = backbone.tokenizer.pad_token_id or 0
    batches = range(0, len(todo), batch_size)
    for start in tqdm(batches, desc="fluency (PPL)", unit="batch", leave=False,
                      disable=not progress or len(batches) < 2):
        chunk = todo[start : start + batch_size]
        # Contexts left-padded, answers right-padded: every answer starts in the same column, so only the last
        # `longest answer + 1` positions need logits (a full (B, T, vocab) tensor would not fit for long prompts).
        width_c = max(len(rows[i][0]) for i in chunk)
        width_a = max(len(rows[i][1]) for i in chunk)
        ids = torch.full((len(chunk), width_c + width_a), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, i in enumerate(chunk):
            context, answer = rows[i]
            ids[b, width_c - len(context) : width_c + len(answer)] = torch.tensor(context + answer)
            mask[b, width_c - len(context) : width_c + len(answer)] = 1
        ids, mask = ids.to(backbone.device), mask.to(backbone.device)
        keep = width_a + 1
        extra = keep_logits(backbone.model, keep)
        logits = backbone.model(input_ids=ids, attention_mask=mask, position_ids=padded_positions(mask),
                                use_cache=False, **extra).logits[:, -keep:-1].float()
        logp = torch.log_softmax(logits, -1).gather(-1, ids[:, width_c:, None]).squeeze(-1).double()
        for b, i in enumerate(chunk):
            n = len(rows[i][1])
            out[i] = (float(-logp[b, :n].sum()), n)
    return out


def perplexity(backbone: Backbone, prompts: list[str], responses: list[str], **kwargs: object) -> float:
    """exp(token-weighted mean NLL) of the responses; NaN if no response has a token."""
    return perplexity_of(response_nll(backbone, prompts, responses, **kwargs))  # type: ignore[arg-type]


def perplexity_of(scored: list[tuple[float, int]]) -> float:
    """exp(token-weighted mean NLL) of `response_nll` rows (also of a mix of rows from several runs, as a search
    composes them); NaN if no row has a token."""
    tokens = sum(n for _, n in scored)
    return math.exp(sum(s for s, _ in scored) / tokens) if tokens else math.nan
