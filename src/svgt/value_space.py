"""The independent value space: aggregator, unconditional and conditional encoders, discriminator, correction Δz.

Convention: the discriminator score `s > 0` means unsafe / misaligned. Δz points toward safety; with the default
`newton` correction it is the step that would bring `s` to 0, and exactly zero when the state is already safe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import ValueModuleConfig


def _mlp(d_in: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_out, d_out))


def last_index(mask: torch.Tensor) -> torch.Tensor:
    """`(B,)`: per row of a `(B, T)` bool mask, the highest index that is True (0 for a row with none). Works for left
    and right padding alike."""
    idx = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask, idx, -1).amax(dim=1).clamp(min=0)


class Aggregator(nn.Module):
    """Pools a masked sequence of states `(B, T, d)` into one state per row `(B, d)`."""

    def __init__(self, hidden_size: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        if mode == "attention":
            self.norm = nn.LayerNorm(hidden_size)
            self.query = nn.Parameter(torch.zeros(hidden_size))

    def forward(self, states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            mask = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)
        mask = mask.bool()
        if self.mode == "last":
            return states[torch.arange(states.shape[0], device=states.device), last_index(mask)]
        scores = (self.norm(states) @ self.query).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
        return torch.einsum("bt,btd->bd", weights, states)


_SQRT_2PI = math.sqrt(2 * math.pi)


@dataclass
class PromptMemory:
    """A prompt batch's keys and values for the conditional path's cross-attention, projected once.

    Decoding encodes one new state per row per step against the same prompt; without this, each step would run the
    prompt's every state through the input norm, `f_c` and the attention's key and value projections again."""

    keys: torch.Tensor
    """`(B, heads, M, d_v / heads)`."""
    values: torch.Tensor
    """Same shape as `keys`."""
    allowed: torch.Tensor
    """`(B, 1, 1, M)` bool: True where a query may attend (not padding)."""


class ValueSpace(nn.Module):
    """`z = R(f_u(h_v) + λ·CrossAttn(f_c(h_v), f_c(H_p)))`, `s = D(z)`."""

    def __init__(self, config: ValueModuleConfig) -> None:
        super().__init__()
        d, dv = config.hidden_size, config.value_dim
        self.config = config
        self.aggregator = Aggregator(d, config.aggregator)
        # Residual-stream norms differ by orders of magnitude across layers and backbones; normalise before encoding.
        self.input_norm = nn.LayerNorm(d)
        self.f_u = _mlp(d, dv, config.dropout)
        self.f_c = _mlp(d, dv, config.dropout)
        self.cross_attn = nn.MultiheadAttention(dv, config.num_heads, dropout=config.dropout, batch_first=True)
        # The conditional path starts as an exact no-op, so stage 2 begins from stage 1's discriminator.
        nn.init.zeros_(self.cross_attn.out_proj.weight)
        nn.init.zeros_(self.cross_attn.out_proj.bias)
        self.readout = nn.Sequential(nn.LayerNorm(dv), nn.Linear(dv, dv), nn.GELU(), nn.Linear(dv, dv))
        self.discriminator = nn.Sequential(nn.Linear(dv, dv), nn.GELU(), nn.Linear(dv, 1))

    def unconditional_parameters(self) -> list[nn.Parameter]:
        """Stage-1 parts: aggregator, input norm, f_u, R and D."""
        modules = [self.aggregator, self.input_norm, self.f_u, self.readout, self.discriminator]
        return [p for m in modules for p in m.parameters()]

    def conditional_parameters(self) -> list[nn.Parameter]:
        """Stage-2 additions: f_c and the cross-attention."""
        return [*self.f_c.parameters(), *self.cross_attn.parameters()]

    def encode(
        self,
        h_v: torch.Tensor,
        prompt_states: torch.Tensor | None = None,
        prompt_mask: torch.Tensor | None = None,
        conditional: bool = True,
    ) -> torch.Tensor:
        """Value state `z` for current states `h_v` of shape `(B, d)` or `(B, T, d)` (token by token)."""
        x = self.input_norm(h_v)
        u = self.f_u(x)
        if not conditional or prompt_states is None or self.config.conditional_weight == 0:
            return self.readout(u)
        squeeze = x.dim() == 2
        q = self.f_c(x.unsqueeze(1) if squeeze else x)
        kv = self.f_c(self.input_norm(prompt_states))
        pad = None if prompt_mask is None else ~prompt_mask.bool()
        if self.training and self.config.memory_dropout > 0:
            pad = self._hide_tokens(pad, kv.shape[:2])
        c, _ = self.cross_attn(q, kv, kv, key_padding_mask=pad, need_weights=False)
        if squeeze:
            c = c.squeeze(1)
        return self.readout(u + self.config.conditional_weight * c)

    def _hide_tokens(self, pad: torch.Tensor | None, shape: torch.Size) -> torch.Tensor:
        """`pad` with a random `memory_dropout` share of each row's visible tokens hidden too; a row keeps its last
        visible token (the one the first bridge is built from) so that no row attends to nothing."""
        visible = torch.ones(shape, dtype=torch.bool, device=self.cross_attn.in_proj_weight.device) if pad is None \
            else ~pad
        keep = visible & (torch.rand(shape, device=visible.device) >= self.config.memory_dropout)
        keep[torch.arange(shape[0], device=visible.device), last_index(visible)] = True
        return ~keep

    def score(self, z: torch.Tensor) -> torch.Tensor:
        return self.discriminator(z).squeeze(-1)

    def prompt_memory(self, prompt_states: torch.Tensor, prompt_mask: torch.Tensor | None = None) -> PromptMemory:
        """The prompt's side of the cross-attention, for `encode_step`. Inference only (no dropout)."""
        attn, dv = self.cross_attn, self.config.value_dim
        heads = attn.num_heads
        kv = self.f_c(self.input_norm(prompt_states))
        _, w_k, w_v = attn.in_proj_weight.split(dv)
        _, b_k, b_v = attn.in_proj_bias.split(dv)
        batch, m = kv.shape[:2]

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, m, heads, dv // heads).transpose(1, 2)

        if prompt_mask is None:
            prompt_mask = torch.ones(batch, m, dtype=torch.bool, device=kv.device)
        return PromptMemory(split(F.linear(kv, w_k, b_k)), split(F.linear(kv, w_v, b_v)),
                            prompt_mask.bool()[:, None, None, :])

    def encode_step(self, h_v: torch.Tensor, memory: PromptMemory) -> torch.Tensor:
        """`encode(h_v, prompt_states, prompt_mask)` for states `(B, d)`, with the prompt's side from `memory`: the
        same value state (to float rounding; a test holds them together), for a fraction of the work per step."""
        x = self.input_norm(h_v)
        u = self.f_u(x)
        if self.config.conditional_weight == 0:
            return self.readout(u)
        attn, dv = self.cross_attn, self.config.value_dim
        heads, batch = attn.num_heads, h_v.shape[0]
        q = F.linear(self.f_c(x), attn.in_proj_weight[:dv], attn.in_proj_bias[:dv])
        q = q.view(batch, heads, 1, dv // heads)
        c = F.scaled_dot_product_attention(q, memory.keys, memory.values, attn_mask=memory.allowed)
        c = attn.out_proj(c.reshape(batch, dv))
        return self.readout(u + self.config.conditional_weight * c)

    def correction(self, z: torch.Tensor, opinions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`(Δz, s)`: differentiates only the small discriminator, never the backbone or encoders.

        Works under a caller's `torch.inference_mode()`: the gradient is taken on a normal-mode copy of `z` (or, for
        the shipped discriminator's shape, in closed form: autograd's bookkeeping costs more than the arithmetic on
        every decoding step that refreshes). `opinions` (other judges' standardised scores) need this space's own
        score statistics, which a `ValueEnsemble` holds: a space alone takes none."""
        if opinions is not None:
            raise ValueError("a single value space cannot average in other judges' opinions: it has no score "
                             "statistics (use ValueModule.judge, a ValueEnsemble when the module has a co-judge)")
        s, g = self._score_and_gradient(z)
        return self.step(s, g), s

    def step(self, s: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Δz for scores `s` `(B,)` and gradients `g = ds/dz` `(B, d_v)`, by the config's `correction`."""
        if self.config.correction == "gradient":
            return -g
        return -F.relu(s + self.config.margin).unsqueeze(-1) / g.pow(2).sum(-1, keepdim=True).clamp(min=1e-12) * g

    def _score_and_gradient(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(s, ds/dz)`, both detached."""
        d = self.discriminator
        parts = list(d) if isinstance(d, nn.Sequential) else []
        if [type(p) for p in parts] == [nn.Linear, nn.GELU, nn.Linear] and parts[1].approximate == "none":
            first, _, last = parts
            with torch.no_grad():
                h = F.linear(z, first.weight, first.bias)
                s = F.linear(F.gelu(h), last.weight, last.bias).squeeze(-1)
                # d gelu(h)/dh = Φ(h) + h·φ(h), the exact GELU's derivative, as autograd computes it.
                slope = 0.5 * (1.0 + torch.erf(h / math.sqrt(2.0))) + h * torch.exp(-0.5 * h * h) / _SQRT_2PI
                g = (slope * last.weight) @ first.weight
            return s.detach(), g.detach()
        with torch.inference_mode(False), torch.enable_grad():
            zg = z.detach().clone().requires_grad_(True)
            s = self.score(zg)
            (g,) = torch.autograd.grad(s.sum(), zg)
        return s.detach(), g.detach()


class ValueEnsemble:
    """Several value spaces, trained on the same data from different initial seeds, read as one; or one value space
    with judges from outside the module (`opinions`, a co-judge's standardised scores) read with it.

    A single run's discriminator depends on its seed about as much as on any data change measured
    (docs/value-judgment.md); averaging runs is the one lever that helped every tuning column. Each space's score is
    standardised by its own statistics on its training texts, the standardised scores are averaged, and the average
    is put back on the first space's scale, so thresholds and margins keep their meaning. The correction steps along
    the first space's gradient (the Δz the bridge reads), as far as the averaged score says.

    Offers the parts of `ValueSpace` that inference and stage 3 use; `z` is the spaces' value states side by side
    `(..., n · d_v)`. Not a module of its own: the spaces belong to the `ValueModule`, which saves them."""

    def __init__(self, spaces: list[ValueSpace], stats: list[list[float]]) -> None:
        if len(spaces) != len(stats) or not spaces:
            raise ValueError(f"an ensemble needs one or more value spaces, one [mean, std] each: got {len(spaces)} "
                             f"spaces and {len(stats)} statistics")
        self.spaces, self.main = spaces, spaces[0]
        self.config, self.aggregator = self.main.config, self.main.aggregator
        ref = next(self.main.discriminator.parameters())
        self._mean = torch.tensor([m for m, _ in stats], dtype=ref.dtype, device=ref.device)
        self._std = torch.tensor([sd for _, sd in stats], dtype=ref.dtype, device=ref.device)

    @property
    def training(self) -> bool:
        return self.main.training

    def encode(self, h_v: torch.Tensor, prompt_states: torch.Tensor | None = None,
               prompt_mask: torch.Tensor | None = None, conditional: bool = True) -> torch.Tensor:
        return torch.cat([vs.encode(h_v, prompt_states, prompt_mask, conditional) for vs in self.spaces], -1)

    def prompt_memory(self, prompt_states: torch.Tensor,
                      prompt_mask: torch.Tensor | None = None) -> list[PromptMemory]:
        return [vs.prompt_memory(prompt_states, prompt_mask) for vs in self.spaces]

    def encode_step(self, h_v: torch.Tensor, memory: list[PromptMemory]) -> torch.Tensor:
        return torch.cat([vs.encode_step(h_v, m) for vs, m in zip(self.spaces, memory)], -1)

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each space's own value state."""
        return z.split(self.config.value_dim, dim=-1)

    def score(self, z: torch.Tensor) -> torch.Tensor:
        return self._average([vs.score(part) for vs, part in zip(self.spaces, self.split(z))])

    def correction(self, z: torch.Tensor, opinions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`(Δz, s)`: Δz lives in the first space (`d_v` wide); `s` is the ensemble's score, with `opinions` (`(B,)`,
        other judges' standardised scores, one vote per row) averaged in."""
        first, *others = self.split(z)
        s_first, g = self.main._score_and_gradient(first)  # the first space's score is read once, with its gradient
        with torch.no_grad():
            s = self._average([s_first, *(vs.score(part) for vs, part in zip(self.spaces[1:], others))], opinions)
        return self.main.step(s, g), s

    def _average(self, scores: list[torch.Tensor], opinions: torch.Tensor | None = None) -> torch.Tensor:
        """The spaces' scores, standardised, averaged (with `opinions`, already standardised) and put back on the
        first space's scale."""
        standard = (torch.stack(scores, -1) - self._mean) / self._std
        if opinions is not None:
            standard = torch.cat([standard, opinions.to(standard)[..., None]], -1)
        return self._mean[0] + self._std[0] * standard.mean(-1)
