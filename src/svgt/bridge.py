"""The Latent Value Bridge: turns a value-space correction Δz into K Bridge Tokens in the backbone's hidden size."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import ValueModuleConfig


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()


class LatentValueBridge(nn.Module):
    """`B = LN(1_K h_v + α·softmax(Q Cᵀ/√d) C) · rms(h_v) · β` with bank `C = [h_v ; φ(Δz)]`.

    The bank works in units of `h_v`'s RMS and the output is scaled back to it, times `β = config.bridge_scale` (the
    stream's norm at the insert layer over its norm at the extract layer; 1 when they are one layer), so Bridge Tokens
    sit at the norm of the residual stream they join (the stage-3 regulariser keeps them there); with the gate α near
    zero an untrained bridge is (a normalised copy of) `h_v` itself.
    """

    def __init__(self, config: ValueModuleConfig) -> None:
        super().__init__()
        d, k = config.hidden_size, config.num_bridge_tokens
        self.num_tokens = k
        self.config = config  # shared with the module: bridge_scale is set on it before stage 3
        self.phi = nn.Sequential(nn.Linear(config.value_dim, d), nn.GELU(), nn.Linear(d, d))
        self.queries = nn.Parameter(torch.randn(k, d) / math.sqrt(d))
        self.gate = nn.Parameter(torch.tensor(float(config.gate_init)))
        self.norm = nn.LayerNorm(d)
        self._scale = 1.0 / math.sqrt(d)

    def forward(self, h_v: torch.Tensor, delta_z: torch.Tensor) -> torch.Tensor:
        """`h_v`: `(B, d)`, `delta_z`: `(B, d_v)` -> Bridge Tokens `(B, K, d)`."""
        scale = _rms(h_v)
        h = h_v / scale
        bank = torch.stack([h, self.phi(delta_z)], dim=1)  # (B, 2, d)
        attn = torch.softmax(torch.einsum("kd,bcd->bkc", self.queries, bank) * self._scale, dim=-1)
        raw = torch.einsum("bkc,bcd->bkd", attn, bank)
        return self.norm(h.unsqueeze(1) + self.gate * raw) * (scale * self.config.bridge_scale).unsqueeze(1)
