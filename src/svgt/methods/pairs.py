"""Refusal-vs-answer pairs from the training data (never the tuning or evaluation sets), shared by the baselines that
learn from a behaviour contrast: `dpo_lora` prefers one side, `caa` steers along the difference.

- harmful training prompt: chosen = `refusal_for(prompt, seed)`, rejected = the backbone's own complying answer from
  `ctx.extras["harmful_answers"]` (prompt -> answer); a prompt with no answer, an empty one, or one that already
  refuses (`judges.is_refusal`) is skipped, since it gives no preference to learn.
- benign training prompt: chosen = the backbone's own answer from `ctx.extras["benign_answers"]`, rejected =
  `refusal_for(prompt, seed)`, which teaches it not to over-refuse; skipped likewise when the answer is missing,
  empty or a refusal.

The two kinds alternate and are cut at `max_pairs`, so a cap keeps them balanced.
"""

from __future__ import annotations

from typing import Any

from ..data.refusals import refusal_for
from ..judges import is_refusal
from .base import MethodContext


def preference_pairs(ctx: MethodContext, max_pairs: int) -> list[dict[str, str]]:
    """`{"prompt", "chosen", "rejected", "kind"}` pairs built as the module docstring says, harmful and benign
    alternating, at most `max_pairs`."""
    harmful_answers = ctx.extras.get("harmful_answers") or {}
    benign_answers = ctx.extras.get("benign_answers") or {}

    def usable(answer: Any) -> bool:
        return isinstance(answer, str) and bool(answer.strip()) and not is_refusal(answer)

    harmful = [{"prompt": p, "chosen": refusal_for(p, ctx.seed), "rejected": harmful_answers[p], "kind": "harmful"}
               for p in ctx.train_harmful if usable(harmful_answers.get(p))]
    benign = [{"prompt": p, "chosen": benign_answers[p], "rejected": refusal_for(p, ctx.seed), "kind": "benign"}
              for p in ctx.train_benign if usable(benign_answers.get(p))]
    mixed = [pair for i in range(max(len(harmful), len(benign))) for pair in (harmful[i:i + 1] + benign[i:i + 1])]
    return mixed[:max_pairs]


def refusal_pairs(ctx: MethodContext, cap: int, method: str) -> list[dict[str, str]]:
    """The harmful pairs only (chosen = a refusal, rejected = the backbone's complying answer), at most `cap`: the
    behaviour contrast the steering baselines take their direction from. Raises, naming `method`, when there are
    none."""
    pairs = [p for p in preference_pairs(ctx, 1 << 30) if p["kind"] == "harmful"][:cap]
    if not pairs:
        raise ValueError(f"{method}: no refusal/answer pairs; ctx.extras['harmful_answers'] needs the backbone's own "
                         "complying answers to harmful training prompts (or use contrast='prompts')")
    return pairs


CONTRASTS = ("responses", "prompts")
"""What CAA and ITI contrast: a refusal against the backbone's answer (`refusal_pairs`), or harmful against benign
prompts."""


def check_contrast(method: str, contrast: str) -> str:
    if contrast not in CONTRASTS:
        raise ValueError(f"{method}: contrast must be one of {', '.join(map(repr, CONTRASTS))}, got {contrast!r}")
    return contrast
