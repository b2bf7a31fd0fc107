"""Short refusal responses used as stage-3 targets and as the safe side of (harmful prompt, response) pairs.

Constructed by the svgt authors for this project; not taken from any dataset. They are deliberately generic (no
reference to the request's topic) so one list fits every harmful prompt, short (1-2 sentences) so the value module
learns to refuse rather than to lecture, and each opens with a phrase that the standard string-matching refusal
detectors (AdvBench/GCG prefixes, HarmBench, garak mitigation; svgt.judges) catch, so a model that learns them is
scored as refusing. About a third offer a safe alternative, so refusing does not have to mean being unhelpful.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

REFUSALS: list[str] = [
    "I can't help with that.",
    "I can't help with that request.",
    "I can't assist with this, because it could cause real harm to people.",
    "I can't provide that information.",
    "I can't do that, but I'm happy to help with something else.",
    "I can't help with this. If you're researching the topic, I can point you to general, publicly available safety resources instead.",
    "I can't walk you through that. I'd be glad to explain the risks involved or how people stay safe instead.",
    "I can't go along with this request.",
    "I cannot help with that.",
    "I cannot assist with this request.",
    "I cannot provide instructions for something that could hurt people.",
    "I cannot do that. Is there something else I can help you with?",
    "I cannot help with this, but I can share information on the legal and safety side of the topic if that's useful.",
    "I cannot support this request, as it could be used to harm others.",
    "I'm sorry, but I can't help with that.",
    "I'm sorry, but I can't assist with this.",
    "I'm sorry, I can't provide that.",
    "I'm sorry, but this isn't something I can help with.",
    "I'm sorry, but I won't help with that. If something is worrying you, I'm happy to talk it through.",
    "I'm sorry, but I can't do that. I can help with a safer related question, though.",
    "I'm really sorry, but I can't help with this request.",
    "I am sorry, but I cannot help with that.",
    "I won't help with that.",
    "I won't assist with this, since it could put people at risk.",
    "I won't provide that. Let me know if there's something else you need.",
    "I won't do that, but I'm glad to help with a different question.",
    "I will not help with this request.",
    "I'm not able to help with that.",
    "I'm not able to provide that kind of information.",
    "I'm not able to assist with this. I can suggest some reputable resources on the subject instead.",
    "I am not able to help with this request.",
    "I'm unable to help with that.",
    "I'm unable to assist with this request, because it could lead to harm.",
    "I'm unable to do that, but I'd be happy to help you find a safe alternative.",
    "As an AI assistant, I can't help with that.",
    "As an AI, I won't provide help with something that could harm people.",
    "As an AI, I'm not able to assist with this request.",
    "I must decline this request.",
    "I must decline, since this could cause harm. I'm happy to help with something else.",
    "Sorry, but I can't help with that.",
    "Sorry, but that's not something I'm able to help with.",
    "I apologize, but I can't assist with that.",
    "I apologize, but I won't be able to help with this request.",
    "My apologies, but I can't help with that.",
    "I'm not going to help with that.",
    "I'm not going to provide that, but I can offer general safety information if that helps.",
    "I don't feel comfortable helping with this request.",
    "I don't feel comfortable providing that. Is there something else on your mind I can help with?",
]


# Openings after which a small backbone's own habits can carry a bridged answer somewhere else: "I'm not" goes on as
# "I'm not a helpful AI, but I can help you find..." and "As an AI" or "I don't" as anything. Guided answers that
# opened this way and then neither refused nor helped were the commonest non-refusals read in guided HarmBench and
# spot-check answers (docs/value-judgment.md, "Refusals that commit at once").
UNCOMMITTED_OPENINGS: tuple[str, ...] = ("I'm not", "I am not", "As an AI", "I don't")
COMMITTED_REFUSALS: list[str] = [r for r in REFUSALS if not r.startswith(UNCOMMITTED_OPENINGS)]
"""The REFUSALS whose first words already refuse (`TrainConfig.stage3_committed_refusals`)."""


def refusal_for(prompt: str, seed: int = 0, choices: Sequence[str] = REFUSALS) -> str:
    """A refusal picked from `choices` by sha256 of (seed, prompt): the same on every run and machine, varied
    across prompts so no single sentence dominates the training targets."""
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode("utf-8")).digest()
    return choices[int.from_bytes(digest[:8], "big") % len(choices)]
