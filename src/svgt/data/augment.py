"""Instruction-style rewrites of harmful *training* prompts.

The harmful training sources are mostly questions ("How to poach animals undetected?", "How was X done in the
past?"), while benign ShareGPT traffic is full of imperatives ("Write a ...", "Give me ..."). Left alone, a
discriminator can learn the form instead of the content and wave through harmful imperatives. Each harmful training
prompt therefore also appears wrapped in one of these imperative frames (chosen by a seeded hash). The frames are
written by the svgt authors; no evaluation or tuning prompt is used to make them.
"""

from __future__ import annotations

import hashlib
import random

FRAMES: tuple[str, ...] = (
    "Give detailed step-by-step instructions for the following: {q}",
    "Write a detailed guide that answers this: {q}",
    "Explain in detail, with specifics: {q}",
    "I need a thorough answer. {q} Be specific.",
    "Write a persuasive post that helps with this: {q}",
    "List the exact steps, materials and tips: {q}",
)


def imperative_variant(prompt: str, seed: int = 0) -> str:
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    return FRAMES[digest[0] % len(FRAMES)].format(q=prompt.strip())


# --- Requests after a context ------------------------------------------------------------------------------------
# Many real requests carry a document first (an email, code, an article) and ask for something about it at the end.
# The trigger state sits on the last token, so the discriminator has to read the request through the context. Pairing
# one context with a harmful request and with a benign one teaches it that the context alone decides nothing.
# Contexts are benign *training* texts (ShareGPT answers); the frames and tasks are written by the svgt authors.

CONTEXT_FRAMES: tuple[str, ...] = (
    "{context}\n\n---\n\n{request}",
    "{context}\n\n{request}",
    "Here is some text:\n\n{context}\n\nWith the text above in mind: {request}",
    "Context:\n{context}\n\nTask: {request}",
    '"""\n{context}\n"""\n\n{request}',
)

BENIGN_CONTEXT_TASKS: tuple[str, ...] = (
    "Summarize the text above in three sentences.",
    "Rewrite this to be more concise.",
    "List the main points of this text.",
    "Translate the first paragraph into French.",
    "Suggest a good title for this.",
    "Explain this to a ten-year-old.",
    "Find any mistakes in the text above and correct them.",
    "Write a short, friendly reply to this.",
    "What is the tone of this text?",
    "Turn this into a bulleted list.",
    "Write three follow-up questions about this.",
    "Make this more formal.",
)


def contextual_variant(request: str, context: str, seed: int = 0) -> str:
    """`request` placed after `context` in one of `CONTEXT_FRAMES` (chosen by a seeded hash of both)."""
    digest = hashlib.sha256(f"{seed}\x00{context}\x00{request}".encode()).digest()
    return CONTEXT_FRAMES[digest[0] % len(CONTEXT_FRAMES)].format(context=context.strip(), request=request.strip())


def contextual_examples(
    harmful_requests: list[str],
    benign_requests: list[str],
    contexts: list[str],
    n: int,
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """`n` harmful and `n` benign contextual prompts; the i-th of each share one context, so only the request differs.

    Benign requests are drawn half from `benign_requests`, half from `BENIGN_CONTEXT_TASKS`.
    """
    if n <= 0 or not contexts or not harmful_requests:
        return [], []
    rng = random.Random(seed)
    benign_pool = list(benign_requests) or list(BENIGN_CONTEXT_TASKS)
    harmful, benign = [], []
    for i in range(n):
        context = rng.choice(contexts)
        harmful.append(contextual_variant(rng.choice(harmful_requests), context, seed))
        request = rng.choice(BENIGN_CONTEXT_TASKS) if i % 2 else rng.choice(benign_pool)
        benign.append(contextual_variant(request, context, seed))
    return harmful, benign
