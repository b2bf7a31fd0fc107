"""Putting a backbone and a value module together, as the CLI (and most users) want them."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from .artifact import load_pretrained
from .backbone import DEFAULT_BACKBONE, Backbone, load_backbone
from .config import ValueModuleConfig
from .module import ValueModule

PACKAGED_ARTIFACTS = Path(__file__).parent / "artifacts"
"""Value modules shipped with svgt, one folder per built-in backbone name."""


@dataclass
class GuidedModel:
    backbone: Backbone
    module: ValueModule
    artifact: str | None
    """Where the module came from; None for an untrained module."""

    @property
    def trained(self) -> bool:
        return self.artifact is not None


def packaged_artifact(backbone_name: str) -> Path | None:
    path = PACKAGED_ARTIFACTS / backbone_name
    return path if (path / "svgt_config.json").is_file() else None


def artifact_source(backbone_name: str, artifact: str | os.PathLike[str] | None = None) -> Path | None:
    """Where a backbone's value module comes from: `artifact` if given, else the one shipped for it, else None."""
    return Path(artifact) if artifact is not None else packaged_artifact(backbone_name)


def untrained_module(backbone: Backbone, seed: int = 0, **overrides: object) -> ValueModule:
    """A randomly initialised value module sized for `backbone` (gate near zero: close to no guidance)."""
    torch.manual_seed(seed)
    config = ValueModuleConfig.for_backbone(backbone.hidden_size, backbone.num_layers, **overrides)
    return ValueModule(config).to(backbone.device).eval()


def load_guided_model(
    backbone: str | Backbone = DEFAULT_BACKBONE,
    artifact: str | os.PathLike[str] | None = None,
    *,
    allow_untrained: bool = True,
    margin: float | None = None,
    gate_threshold: float | None = None,
    co_judge: bool = True,
) -> GuidedModel:
    """Backbone plus value module: `artifact` if given, else the module shipped for this backbone, else (with a
    warning on stderr) an untrained one. `margin` overrides the module's Newton-step margin and `gate_threshold` its
    safe-prompt gate (`ValueModuleConfig`; `float("-inf")` turns the gate off). `co_judge=False` neither loads nor
    consults the co-judge the module may name (`svgt.cojudge`): it judges alone, against its own gate."""
    bb = load_backbone(backbone) if isinstance(backbone, str) else backbone
    source = artifact_source(bb.name, artifact)
    if source is not None:
        guided = GuidedModel(bb, load_pretrained(source, bb, co_judge=co_judge), str(source))
        if not co_judge:
            guided.module.config.co_judge = None
    elif not allow_untrained:
        raise FileNotFoundError(f"no value module is shipped for backbone {bb.name!r}; pass an artifact directory")
    else:
        print(
            f"svgt: warning: no trained value module for {bb.name!r}; using an UNTRAINED one "
            "(its guidance means nothing; train one with `svgt train` or pass --artifact)",
            file=sys.stderr,
        )
        guided = GuidedModel(bb, untrained_module(bb), None)
    if margin is not None:
        guided.module.config.set_margin(margin)
    if gate_threshold is not None:
        guided.module.config.gate_threshold = float(gate_threshold)
    return guided
