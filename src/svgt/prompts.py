"""Turning user prompts into left-padded token batches, through the chat template when the tokenizer has one."""

from __future__ import annotations

import re
from typing import Any

import torch

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


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


def paragraph_prompts(prompt: str | list[dict[str, str]]) -> list[str | list[dict[str, str]]]:
    """The prompt once per paragraph of its (last user) text, as prompts of the same kind; [] for one paragraph.

    Paragraphs are split at blank lines; ones without a word character (a `---` rule) are dropped."""
    if isinstance(prompt, list):
        users = [i for i, m in enumerate(prompt) if m.get("role") == "user"]
        if not users:
            return []
        text = prompt[users[-1]]["content"]
    else:
        text = prompt
    parts = [p.strip() for p in _PARAGRAPH_BREAK.split(text)]
    parts = [p for p in parts if re.search(r"\w", p)]
    if len(parts) < 2:
        return []
    if isinstance(prompt, list):
        return [[*prompt[: users[-1]], {**prompt[users[-1]], "content": p}, *prompt[users[-1] + 1 :]] for p in parts]
    return parts


def _ids(tokenizer: Any, text: str, templated: bool) -> list[int]:
    # A rendered chat template already carries the special tokens it wants (e.g. Gemma's <bos>).
    return tokenizer(text, add_special_tokens=not templated)["input_ids"]


def encode_prompts(
    tokenizer: Any,
    prompts: list[str] | list[list[dict[str, str]]],
    chat_template: bool = True,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded `(input_ids, attention_mask)` for a batch of prompts."""
    if not prompts:
        raise ValueError("no prompts given")
    templated = chat_template and has_chat_template(tokenizer)
    rows = [_ids(tokenizer, format_prompt(tokenizer, p, chat_template), templated) for p in prompts]
    for i, row in enumerate(rows):
        if not row:
            raise ValueError(f"prompt {i} is empty after tokenisation")
    return left_pad(rows, tokenizer.pad_token_id, device)


def paragraph_ids(tokenizer: Any, prompt: str | list[dict[str, str]], chat_template: bool = True) -> list[list[int]]:
    """Token ids of each paragraph of `prompt` as a prompt of its own (see `paragraph_prompts`); [] for one."""
    templated = chat_template and has_chat_template(tokenizer)
    rows = [_ids(tokenizer, format_prompt(tokenizer, p, chat_template), templated) for p in paragraph_prompts(prompt)]
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
