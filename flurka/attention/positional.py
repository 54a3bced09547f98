"""Positional encodings: learned absolute (added to embeddings), RoPE (rotates q and k), ALiBi (score bias).

RoPE supports position interpolation (Chen et al., 2023): positions are divided by `scale`, so a model trained
at length L can run at length scale·L with rotation angles inside the range it saw.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LearnedPositionalEmbedding(nn.Module):
    """Absolute learned positions, added to token embeddings; errors beyond max_len instead of wrapping."""

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.weight = nn.Parameter(torch.randn(max_len, d_model) * 0.02)

    def forward(self, n: int) -> torch.Tensor:
        if n > self.max_len:
            raise ValueError(f"sequence of {n} tokens exceeds the learned positional table (max_len={self.max_len})")
        return self.weight[:n]


class RotaryEmbedding(nn.Module):
    """Rotary position embedding on [B, N, H, D] tensors (rotate-half convention, D even)."""

    def __init__(self, head_dim: int, *, base: float = 10000.0, scale: float = 1.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head_dim; got {head_dim}")
        if scale < 1.0:
            raise ValueError(f"rope_scale must be ≥ 1 (it interpolates positions); got {scale}")
        self.scale = scale
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        n = x.shape[1]
        pos = (torch.arange(offset, offset + n, device=x.device, dtype=torch.float32)) / self.scale
        angles = torch.outer(pos, self.inv_freq)  # [N, D/2]
        cos = torch.cat([angles.cos(), angles.cos()], dim=-1)[None, :, None, :]
        sin = torch.cat([angles.sin(), angles.sin()], dim=-1)[None, :, None, :]
        xf = x.float()
        x1, x2 = xf.chunk(2, dim=-1)
        rotated = torch.cat([-x2, x1], dim=-1)
        return (xf * cos + rotated * sin).to(x.dtype)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """ALiBi head slopes (Press et al., 2022): a geometric sequence 2^(-8/n), 2^(-16/n), ...

    For a head count that is not a power of two, the standard interleaving of the next power's slopes.
    """

    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n_heads).is_integer():
        slopes = power_of_two(n_heads)
    else:
        closest = 2 ** math.floor(math.log2(n_heads))
        slopes = power_of_two(closest) + power_of_two(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(slopes: torch.Tensor, n_q: int, n_k: int, *, causal: bool) -> torch.Tensor:
    """[H, Nq, Nk] additive bias −slope·|i − j| (bottom-right aligned when Nq ≠ Nk)."""
    i = torch.arange(n_q, device=slopes.device)[:, None] + (n_k - n_q)
    j = torch.arange(n_k, device=slopes.device)[None, :]
    dist = (i - j).abs().float() if not causal else (i - j).clamp(min=0).float()
    return -slopes[:, None, None] * dist[None]
