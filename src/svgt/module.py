"""The value module: value space + Latent Value Bridge, the only thing svgt trains and saves."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from .bridge import LatentValueBridge
from .config import ValueModuleConfig
from .value_space import ValueEnsemble, ValueSpace


@dataclass
class BridgeOutput:
    tokens: torch.Tensor
    """Bridge Tokens `(B, K, d)`."""
    score: torch.Tensor
    """Discriminator score `s` of the trigger state `(B,)`; > 0 means unsafe."""
    delta_z: torch.Tensor
    """Correction `(B, d_v)`."""


class ValueModule(nn.Module):
    def __init__(self, config: ValueModuleConfig) -> None:
        super().__init__()
        self.config = config
        self.value_space = ValueSpace(config)
        """The first value space: the one stages 1-2 train, and whose Δz the bridge reads."""
        self.more_spaces = nn.ModuleList(ValueSpace(config) for _ in range(config.value_spaces - 1))
        """The others that judge beside it (`ValueModuleConfig.value_spaces`); empty by default."""
        self.bridge = LatentValueBridge(config)
        self.co_judge: Any = None
        """The `svgt.cojudge.CoJudge` that `config.co_judge` names, once attached (`attach_co_judge`); not saved
        with the weights: it is another backbone and its own artifact."""

    @property
    def judge(self) -> ValueSpace | ValueEnsemble:
        """What scores states and corrects them, at inference and in stage 3: the value space, or all of them (with
        a co-judge, as an ensemble that can average its opinions in)."""
        if not len(self.more_spaces):
            if self.config.co_judge:
                return ValueEnsemble([self.value_space], self.config.score_stats or [])
            return self.value_space
        return ValueEnsemble([self.value_space, *self.more_spaces], self.config.score_stats or [])

    def score(
        self,
        states: torch.Tensor,
        prompt_states: torch.Tensor | None = None,
        prompt_mask: torch.Tensor | None = None,
        conditional: bool = True,
    ) -> torch.Tensor:
        """Discriminator score for states `(B, d)` or token by token for `(B, T, d)`."""
        judge = self.judge
        return judge.score(judge.encode(states, prompt_states, prompt_mask, conditional))

    def score_sequence(self, states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Unconditional score of a standalone text: pool its states, then score (stage 1)."""
        return self.score(self.value_space.aggregator(states, mask), conditional=False)

    def make_bridge(
        self,
        h_v: torch.Tensor,
        prompt_states: torch.Tensor | None = None,
        prompt_mask: torch.Tensor | None = None,
    ) -> BridgeOutput:
        """Bridge Tokens for trigger states `h_v` `(B, d)` given the prompt's states `(B, M, d)`."""
        judge = self.judge
        delta_z, s = judge.correction(judge.encode(h_v, prompt_states, prompt_mask))
        return BridgeOutput(self.bridge(h_v, delta_z), s, delta_z)


def join_value_spaces(module: ValueModule, others: list[ValueSpace], stats: list[list[float]]) -> ValueModule:
    """A new module whose value space is `module`'s, with `others` judging beside it (`stats`: one [mean, std] per
    space, `module`'s first); its bridge is a copy of `module`'s."""
    config = replace(module.config, value_spaces=1 + len(others), score_stats=stats)
    joined = ValueModule(config).to(next(module.parameters()).device)
    joined.value_space.load_state_dict(module.value_space.state_dict())
    for mine, theirs in zip(joined.more_spaces, others):
        mine.load_state_dict(theirs.state_dict())
    joined.bridge.load_state_dict(module.bridge.state_dict())
    return joined.train(module.training)
