"""A co-judge: a value module trained on another backbone, asked for its view of each prompt before the first bridge.

One discriminator's mistakes depend on the backbone whose states it reads: on the tuning set, Gemma 3 270M's module
separates harmful requests from edgy benign questions at AUROC 0.884 and SmolLM2's at 0.956, and the two modules'
scores averaged reach 0.948 against Gemma's edgy prompts, with each covering the other's weak categories
(docs/backbones.md, "What the first-bridge score reads"). A module that names a co-judge
(`ValueModuleConfig.co_judge`) averages the co-judge's standardised prompt score with its own, one vote each, for the
decisions made before decoding: the gate and the Newton step's length. Everything else stays the module's: the
step's direction, the Bridge Tokens, the per-token scores a refresh reads. The co-judge costs one prompt forward of
its backbone (up to its extract layer) per request, and the memory of that backbone.

The gate and margin are chosen with the co-judge in place (`svgt train --retune --set co_judge=NAME`), so turning it
off (`GenerationConfig.co_judge=False`) leaves a gate calibrated for the average.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .backbone import Backbone, load_backbone
from .generation import encode_batch, judge_prompts
from .config import GenerationConfig
from .module import ValueModule

Prompts = list[str] | list[list[dict[str, str]]]


@dataclass
class CoJudge:
    backbone: Backbone
    module: ValueModule
    """The co-judge's own value module (it has no co-judge itself)."""
    stats: list[float]
    """[mean, standard deviation] of its prompt scores on its stage-1 training texts: what standardises them."""

    @torch.inference_mode()
    def scores(self, prompts: Prompts, chat_template: bool = True, score_paragraphs: bool = True,
               batch_size: int = 8) -> torch.Tensor:
        """`(B,)` first-bridge scores of `prompts` on the co-judge's own scale, each prompt formatted for its
        backbone (and its paragraphs and last sentence scored as its own module's settings say)."""
        cfg = GenerationConfig(score_paragraphs=score_paragraphs, co_judge=False)
        out = []
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            ids, mask, paragraphs, _ = encode_batch(self.backbone, self.module, chunk, cfg, chat_template)
            out.append(self.module.judge.score(judge_prompts(self.backbone, self.module, ids, mask, paragraphs)[1]))
        return torch.cat(out) if out else torch.zeros(0)

    def opinions(self, prompts: Prompts, chat_template: bool = True, score_paragraphs: bool = True) -> torch.Tensor:
        """`(B,)` standardised scores (`stats`), what `GuidedDecoder.run` averages in as `opinions`."""
        mean, std = self.stats
        return (self.scores(prompts, chat_template, score_paragraphs) - mean) / std


def artifact_dir(name_or_path: str | os.PathLike[str]) -> Path:
    """A packaged artifact's directory by backbone name (`svgt.pipeline.PACKAGED_ARTIFACTS`), else the path given;
    raises, naming both places, when neither holds an artifact."""
    from .pipeline import packaged_artifact

    packaged = packaged_artifact(str(name_or_path))
    if packaged is not None:
        return packaged
    path = Path(name_or_path)
    if not (path / "svgt_config.json").is_file():
        raise FileNotFoundError(f"co-judge {str(name_or_path)!r}: neither a packaged artifact's name nor an artifact "
                                f"directory (no {path / 'svgt_config.json'})")
    return path


@functools.lru_cache(maxsize=4)
def _load(directory: str, device: str, dtype: torch.dtype) -> tuple[Backbone, ValueModule]:
    """The co-judge's backbone (by the name its artifact records) and module, loaded once per process, device and
    dtype: a tuning search or an evaluation loads its module many times."""
    from .artifact import load_pretrained, read_config

    name = read_config(directory)["backbone"].get("name")
    if not name:
        raise ValueError(f"co-judge {directory}: its svgt_config.json names no backbone to load it on")
    backbone = load_backbone(name, device=device, dtype=dtype)
    module = load_pretrained(directory, backbone, co_judge=False)
    module.config.co_judge = None  # its own score, not an average with a third module's
    return backbone, module


def load_co_judge(name_or_path: str | os.PathLike[str], stats: list[float], device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32) -> CoJudge:
    """The artifact `name_or_path` on its own backbone (on `device`, in `dtype`), as a co-judge with these score
    statistics. A co-judge judges alone: a co-judge it names itself is neither loaded nor asked, so two backbones'
    modules can name each other."""
    directory = artifact_dir(name_or_path)
    backbone, module = _load(str(directory.resolve()), str(device), dtype)
    return CoJudge(backbone, module, list(stats))


def attach_co_judge(module: ValueModule, device: str | torch.device | None = None,
                    dtype: torch.dtype = torch.float32) -> ValueModule:
    """Load and attach the co-judge `module.config` names (nothing to do when it names none); returns `module`.
    Its backbone goes where the host's is, in the host's dtype (`load_pretrained` passes both): a host in half
    precision on a GPU would otherwise carry a second backbone in float32 beside it."""
    c = module.config
    if c.co_judge:
        where: Any = device if device is not None else next(module.parameters()).device
        module.co_judge = load_co_judge(c.co_judge, c.co_judge_stats or [], where, dtype)
    else:
        module.co_judge = None
    return module
