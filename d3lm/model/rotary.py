"""Rotary position embeddings (NT v2 / ESM convention: rotate the two halves of each head)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def rotate_half(x: Tensor) -> Tensor:
    """(x1, x2) -> (-x2, x1) over the two halves of the last dimension (the NT / ESM convention)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Rotary(nn.Module):
    """Rotary position embedding over the full head dimension.

    cos/sin are computed in float32 and cached for the longest length seen per device and dtype,
    so a sampler calling the network many times at one length pays for them once. The cache is a
    plain attribute, not a buffer, so ``model.to(bfloat16)`` cannot degrade the angles.
    """

    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.base = base
        self._cache: tuple[torch.device, torch.dtype, Tensor, Tensor] | None = None

    def cos_sin(
        self, length: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[Tensor, Tensor]:
        cache = self._cache
        if cache is None or cache[0] != device or cache[1] != dtype or cache[2].shape[0] < length:
            exponents = torch.arange(0, self.head_dim, 2, device=device, dtype=torch.float32)
            inv_freq = 1.0 / (self.base ** (exponents / self.head_dim))
            angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv_freq)
            angles = torch.cat((angles, angles), dim=-1)  # (length, head_dim), halves repeated
            cache = (device, dtype, angles.cos().to(dtype), angles.sin().to(dtype))
            self._cache = cache
        return cache[2][:length], cache[3][:length]

    def forward(self, x: Tensor, positions: Tensor | None = None, length: int = 0) -> Tensor:
        """Rotate ``x`` (..., length, head_dim) by its positions along ``length``; or, given
        ``positions`` (N,) below ``length``, rotate ``x`` (N, heads, 1, head_dim) row by row."""
        if positions is None:
            cos, sin = self.cos_sin(x.shape[-2], x.device, x.dtype)
        else:
            cos, sin = self.cos_sin(length, x.device, x.dtype)
            cos, sin = cos[positions, None, None], sin[positions, None, None]
        return x * cos + rotate_half(x) * sin
