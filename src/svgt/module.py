"""The value module: value space + Latent Value Bridge, the only thing svgt trains and saves."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .bridge import LatentValueBridge
from .config import ValueModuleConfig
from .value_space import ValueSpace


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
        self.bridge = LatentValueBridge(config)

    def score(
        self,
        states: torch.Tensor,
        prompt_states: torch.Tensor | None = None,
        prompt_mask: torch.Tensor | None = None,
        conditional: bool = True,
    ) -> torch.Tensor:
        """Discriminator score for states `(B, d)` or token by token for `(B, T, d)`."""
        z = self.value_space.encode(states, prompt_states, prompt_mask, conditional)
        return self.value_space.score(z)

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
        z = self.value_space.encode(h_v, prompt_states, prompt_mask)
        delta_z, s = self.value_space.correction(z)
        return BridgeOutput(self.bridge(h_v, delta_z), s, delta_z)
