"""Turning user prompts into left-padded token batches, through the chat template when the tokenizer has one.

A base model has no chat template of its own (or one it was never trained on), so a built-in base backbone carries a
`PromptFormat`: a chat template in a plain-text format the model continues naturally, set on its tokenizer when the
backbone is wrapped, plus the strings that end an answer in that format. Everything downstream (training, generation,
evaluation, serving) goes through the tokenizer's chat template, so no path has to know which backbone it runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# Where a sentence (or a lead-in such as "my question:") ends: after . ! ? or : and whitespace, or at a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+|\n+")


@dataclass(frozen=True)
class PromptFormat:
    """How prompts are written for a backbone that has no chat habits."""

    name: str
    chat_template: str
    """A Jinja chat template, rendered by transformers' `apply_chat_template` like any other."""
    stop_strings: tuple[str, ...] = ()
    """Text that ends an answer in this format (the start of the next turn a base model goes on to write);
    generation cuts the answer before the first of them (`GenerationConfig.stop_strings`)."""


QUESTION_ANSWER = PromptFormat(
    "question-answer",
    # <bos>, then "Question: ...\nAnswer:\n" per turn (a system message first, as a plain paragraph). The answer
    # starts on a line of its own, so a response tokenised on its own (training) gets the ids a generated one has.
    r"{{ bos_token }}{% for message in messages %}"
    r"{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    r"{% elif message['role'] == 'user' %}{{ 'Question: ' + message['content'] + '\n' }}"
    r"{% elif message['role'] == 'assistant' %}{{ 'Answer:\n' + message['content'] + '\n' }}"
    r"{% else %}{{ raise_exception('the question-answer format has the roles system, user and assistant, not ' "
    r"+ message['role']) }}{% endif %}{% endfor %}"
    r"{% if add_generation_prompt %}{{ 'Answer:\n' }}{% endif %}",
    ("\nQuestion:",),
)
r"""The plain format of the built-in base backbone (Gemma 3 270M): `Question: {prompt}\nAnswer:\n`, the answer ending
where the model starts the next question. Its GGUF tokenizer has no chat template, and Gemma's own turn markers
are untrained in the base model (it answers them with noise)."""


def apply_prompt_format(tokenizer: Any, prompt_format: PromptFormat) -> None:
    """Make `prompt_format` the tokenizer's chat template (replacing any it had), so `format_prompt` and anything
    else that calls `apply_chat_template` (TRL, for DPO) writes prompts in it."""
    tokenizer.chat_template = prompt_format.chat_template


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def format_prompt(tokenizer: Any, prompt: str | list[dict[str, str]], chat_template: bool = True) -> str:
    """The text the backbone sees: exactly `apply_chat_template(messages, add_generation_prompt=True)` when a
    template is used, else the prompt itself."""
    if isinstance(prompt, list):
        messages = prompt
    else:
        messages = [{"role": "user", "content": prompt}]
    if chat_template and has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if isinstance(prompt, list):
        return "\n".join(m["content"] for m in messages)
    return prompt


def _pieces(prompt: str | list[dict[str, str]], boundary: re.Pattern[str]) -> list[str | list[dict[str, str]]]:
    """The prompt's (last user) text split at `boundary`, each piece with a word character as a prompt of the same
    kind (in a conversation, in place of that message); [] when there are fewer than two such pieces."""
    if isinstance(prompt, list):
        users = [i for i, m in enumerate(prompt) if m.get("role") == "user"]
        if not users:
            return []
        text = prompt[users[-1]]["content"]
    else:
        text = prompt
    pieces = [p for p in (p.strip() for p in boundary.split(text)) if re.search(r"\w", p)]
    if len(pieces) < 2:
        return []
    if isinstance(prompt, list):
        i = users[-1]
        return [[*prompt[:i], {**prompt[i], "content": p}, *prompt[i + 1 :]] for p in pieces]
    return pieces


def paragraph_prompts(prompt: str | list[dict[str, str]]) -> list[str | list[dict[str, str]]]:
    """The prompt once per paragraph of its (last user) text, as prompts of the same kind; [] for one paragraph.

    Paragraphs are split at blank lines; ones without a word character (a `---` rule) are dropped."""
    return _pieces(prompt, _PARAGRAPH_BREAK)


def last_sentence_prompt(prompt: str | list[dict[str, str]]) -> list[str | list[dict[str, str]]]:
    """The last sentence of the prompt's (last user) text as a prompt of its own, in a list; [] for one sentence.

    A sentence ends at . ! ? or : followed by whitespace, or at a line break, so "... my first question: <request>"
    ends in the request alone. Pieces without a word character are dropped."""
    return _pieces(prompt, _SENTENCE_END)[-1:]


def part_prompts(prompt: str | list[dict[str, str]], paragraphs: bool = True,
                 last_sentence: bool = False) -> list[str | list[dict[str, str]]]:
    """The parts of a prompt that are also scored on their own for its first bridge: its paragraphs, then its last
    sentence unless that is a paragraph. The defaults are `GenerationConfig.score_paragraphs`'s and the shipped
    modules' `ValueModuleConfig.score_last_sentence`."""
    parts = paragraph_prompts(prompt) if paragraphs else []
    tail = last_sentence_prompt(prompt) if last_sentence else []
    return parts + [t for t in tail if t not in parts]


def _ids(tokenizer: Any, text: str, templated: bool) -> list[int]:
    # A rendered chat template already carries the special tokens it wants (e.g. Gemma's <bos>).
    return tokenizer(text, add_special_tokens=not templated)["input_ids"]


def keep_end(tokenizer: Any, ids: list[int], limit: int) -> list[int]:
    """`ids` cut to at most `limit` tokens for length, keeping the end (a chat template's assistant header, which the
    trigger state sits on) and a leading beginning-of-sequence token: models are only ever run with one there (Gemma's
    states without its `<bos>` are far from anything it saw), and generation never cuts it."""
    if len(ids) <= limit:
        return ids
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None and ids[0] == bos and limit > 1:
        return [bos, *ids[len(ids) - limit + 1 :]]
    return ids[len(ids) - limit :]


def encode_prompts(
    tokenizer: Any,
    prompts: list[str] | list[list[dict[str, str]]],
    chat_template: bool = True,
    device: str | torch.device = "cpu",
    max_tokens: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded `(input_ids, attention_mask)` for a batch of prompts; with `max_tokens`, longer ones are cut as
    `keep_end` cuts them."""
    if not prompts:
        raise ValueError("no prompts given")
    templated = chat_template and has_chat_template(tokenizer)
    rows = [_ids(tokenizer, format_prompt(tokenizer, p, chat_template), templated) for p in prompts]
    if max_tokens is not None:
        rows = [keep_end(tokenizer, r, max_tokens) for r in rows]
    for i, row in enumerate(rows):
        if not row:
            raise ValueError(f"prompt {i} is empty after tokenisation")
    return left_pad(rows, tokenizer.pad_token_id, device)


def part_ids(tokenizer: Any, prompt: str | list[dict[str, str]], chat_template: bool = True, paragraphs: bool = True,
             last_sentence: bool = False) -> list[list[int]]:
    """Token ids of each part of `prompt` (`part_prompts`) as a prompt of its own; [] when it has none."""
    templated = chat_template and has_chat_template(tokenizer)
    rows = [_ids(tokenizer, format_prompt(tokenizer, p, chat_template), templated)
            for p in part_prompts(prompt, paragraphs, last_sentence)]
    return [r for r in rows if r]


def left_pad(rows: list[list[int]], pad_id: int, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    return _pad(rows, pad_id, device, left=True)


def right_pad(rows: list[list[int]], pad_id: int,
              device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """`(ids, mask)` with each row at the start: responses after left-padded prompts all begin in one column."""
    return _pad(rows, pad_id, device, left=False)


def _pad(rows: list[list[int]], pad_id: int, device: str | torch.device,
         left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        cols = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, cols] = torch.tensor(row, dtype=torch.long)
        mask[i, cols] = 1
    return ids.to(device), mask.to(device)
