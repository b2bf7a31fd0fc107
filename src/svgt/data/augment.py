"""Instruction-style rewrites of harmful *training* prompts.

The harmful training sources are mostly questions ("How to poach animals undetected?", "How was X done in the
past?"), while benign ShareGPT traffic is full of imperatives ("Write a ...", "Give me ..."). Left alone, a
discriminator can learn the form instead of the content and wave through harmful imperatives. Each harmful training
prompt therefore also appears wrapped in one of these imperative frames (chosen by a seeded hash). The frames are
written by the svgt authors; no evaluation or tuning prompt is used to make them.
"""

from __future__ import annotations

import hashlib

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
