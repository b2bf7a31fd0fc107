"""Hard benign negatives: unlabelled ShareGPT prompts a first-round discriminator scores as unsafe, relabelled benign.

Why: the harmful training prompts cluster on grim topics (weapons, drugs, crime, atrocities) and on a few phrasings
(the tense rewordings' "How did people ... in the past?"), while most benign training prompts are everyday requests.
A discriminator can then separate the two by topic and phrasing instead of intent, and guidance refuses neutral
questions about history, medicine or the law. Real traffic holds such neutral questions: `build_corpus` keeps a
reserve of short ShareGPT prompts that ChatGPT answered and that copy no harmful or held-out text, and the trainer
scores them with the discriminator it has after stages 1-2. The top-scored ones join the benign side of stages 1-3
for a second, final training of the discriminator; a fraction is held out for the margin search instead, so the
tuning set sees this kind of prompt too. No evaluation prompt is read: the reserve is leak-checked like every other
training text, and the picks depend only on training data and the seed.

Opt-in (`TrainConfig.hard_negatives`): measured on the default backbone, the picks were mostly everyday requests
phrased like harmful ones, and training on them cost more HarmBench val refusal than it saved in over-refusal
(docs/data.md).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..data.records import PairExample, PromptExample, file_lines
from ..data.roles import HARD_NEGATIVE_SOURCE, hold_out
from ..generation import encode_prompt
from ..module import ValueModule
from .activations import StateSet
from .stages import _pad


HARD_NEGATIVES_NAME = "hard_negatives.jsonl"
"""Written next to a trained module: every pick, its first-round score and whether it was held out."""


@torch.no_grad()
def prompt_scores(module: ValueModule, states: StateSet, batch_size: int = 64) -> torch.Tensor:
    """`(N,)` discriminator scores of standalone prompts, computed as generation does before the first bridge
    (`svgt.generation.prompt_value` without paragraphs)."""
    out = []
    for start in range(0, len(states), batch_size):
        x, mask = _pad(states.prompt_states[start : start + batch_size], left=True)
        out.append(module.judge.score(encode_prompt(module, x, mask)[1]))
    return torch.cat(out) if out else torch.zeros(0)


@dataclass
class HardNegatives:
    train: list[PairExample]
    """Picked prompts (with ChatGPT's answer) that join the benign training data."""
    heldout: list[PairExample]
    """Picked prompts kept out of training, for the margin search's edgy set."""
    scores: dict[str, float]
    """First-round score of every picked prompt."""


def pick_hard_negatives(candidates: list[PairExample], scores: torch.Tensor, n: int, heldout_fraction: float,
                        seed: int) -> HardNegatives:
    """The `n` candidates with the highest scores (ties broken by prompt text), split into training and held out."""
    if len(candidates) != len(scores):
        raise ValueError(f"{len(scores)} scores for {len(candidates)} candidates")
    ranked = sorted(zip(scores.tolist(), candidates), key=lambda sc: (-sc[0], sc[1].prompt))[:n]
    heldout, train = hold_out([c for _, c in ranked], heldout_fraction, f"{seed}|hard_negatives", lambda p: p.prompt)
    return HardNegatives(train, heldout, {c.prompt: round(s, 4) for s, c in ranked})


def heldout_prompts(mined: HardNegatives) -> list[PromptExample]:
    """The held-out picks as benign prompts for `TrainingCorpus.heldout_edgy`."""
    return [PromptExample(p.prompt, 0, HARD_NEGATIVE_SOURCE) for p in mined.heldout]


def save_hard_negatives(path: Path, mined: HardNegatives) -> None:
    rows = [{**asdict(p), "score": mined.scores[p.prompt], "heldout": held}
            for held, picks in ((False, mined.train), (True, mined.heldout)) for p in picks]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def load_hard_negatives(path: Path) -> HardNegatives:
    train: list[PairExample] = []
    heldout: list[PairExample] = []
    scores: dict[str, float] = {}
    for n, line in enumerate(file_lines(path.read_text(encoding="utf-8")), 1):
        try:
            row = json.loads(line)
            pick = PairExample(row["prompt"], row["response"], int(row["label"]), row["source"])
            scores[pick.prompt] = float(row["score"])
            (heldout if row["heldout"] else train).append(pick)
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{n}: expected a JSON object with prompt, response, label, source, score and "
                             f"heldout ({e!r})") from None
    return HardNegatives(train, heldout, scores)
