"""Counter-based random numbers: a float64 uniform is a pure function of
(seed, sequence index, step, stream, position).

Why not ``torch.Generator``: a sequence's draws must not depend on its batch, its batch size,
or on which positions a step evaluates (the committed-positions-only head and the full head must
draw the same tokens). Hashing the coordinates gives that for free, vectorised, on any device.
The mixer is Wellons' ``lowbias32``; 32-bit multiplies are split in 16-bit halves so nothing
relies on signed int64 overflow.
"""

from __future__ import annotations

import torch
from torch import Tensor

_M32 = 0xFFFFFFFF

#: Named streams, so that adding one never shifts the others.
ORDER, COUNT, TOKEN, REMASK = range(4)
N_STREAMS = 4


def _mul32(x: Tensor, c: int) -> Tensor:
    """(x * c) mod 2**32 for int64 tensors holding uint32 values."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _M32


def _mix(x: Tensor) -> Tensor:
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _absorb(h: Tensor, word: Tensor | int) -> Tensor:
    return _mix(h ^ _mul32(torch.as_tensor(word, device=h.device) & _M32, 0x9E3779B1) ^ 0x85EBCA6B)


def row_keys(seed: int, index: Tensor) -> Tensor:
    """One 32-bit key per sequence from (seed, global index), computed once per batch."""
    h = torch.full_like(index, 0x2545F491, dtype=torch.int64)
    for word in (seed & _M32, (seed >> 32) & _M32, index):
        h = _absorb(h, word)
    return h


def uniforms(keys: Tensor, step: int, length: int) -> Tensor:
    """U[0, 1) draws, float64, shape (N_STREAMS, B, length) for the sequences of ``keys`` (B,)."""
    streams = torch.arange(N_STREAMS, device=keys.device)[:, None, None]
    pos = torch.arange(length, device=keys.device)
    h = _absorb(_absorb(_absorb(keys, step)[None, :, None], streams), pos[None, None, :])
    hi, lo = _absorb(h, 1), _absorb(h, 2)
    return ((hi << 21) + (lo >> 11)).double() * 2.0**-53
