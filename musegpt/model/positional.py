"""Positional encodings: learned (GPT-2), sinusoidal (Vaswani et al.) and rotary (RoPE).

Learned and sinusoidal encodings are added to the token embeddings; rotary
encodings rotate queries and keys inside attention instead.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_table(n_positions: int, dim: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d))."""
    position = torch.arange(n_positions, dtype=torch.float64).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
    table = torch.zeros(n_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div[: dim // 2])
    return table.float()


class LearnedPositions(nn.Module):
    def __init__(self, n_positions: int, dim: int) -> None:
        super().__init__()
        self.wpe = nn.Embedding(n_positions, dim)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.wpe(positions)
        return out


class SinusoidalPositions(nn.Module):
    table: torch.Tensor

    def __init__(self, n_positions: int, dim: int) -> None:
        super().__init__()
        # Not a parameter and not saved: it is a pure function of the config.
        self.register_buffer("table", sinusoidal_table(n_positions, dim), persistent=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.table[positions]


class RotaryEmbedding(nn.Module):
    """Precomputed cos/sin for rotating (q, k) pairs of channels by position."""

    cos: torch.Tensor
    sin: torch.Tensor

    def __init__(self, n_positions: int, head_size: int, base: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_size, 2, dtype=torch.float64) / head_size))
        angles = torch.outer(torch.arange(n_positions, dtype=torch.float64), inv_freq)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for `positions` (T,), shaped (T, head_size/2)."""
        return self.cos[positions], self.sin[positions]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (x[..., :h/2], x[..., h/2:]) of x (B, H, T, h) by the given angles."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos = cos.to(x.dtype)
    sin = sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
