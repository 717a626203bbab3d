"""What samplers see of a model: a feature call (the expensive network) and a cheap head.

Splitting the two lets a sampler cache features between steps and run the head only at the
positions it is about to commit; samplers never import a model class (docs/design.md, imports).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from d3lm.registry import takes_keyword


@runtime_checkable
class Denoiser(Protocol):
    """``features(ids)`` (B, L) -> (B, L, H); ``features(ids, at)`` with ``at`` (B, L) bool ->
    (N, H), the features at those positions in row-major order; ``logits(features)``
    (..., H) -> (..., V) with the mask token's logit at -inf (SUBS: the mask can never be
    predicted)."""

    mask_id: int
    vocab_size: int
    time_conditioned: bool

    def features(self, ids: Tensor, at: Tensor | None = None) -> Tensor: ...

    def logits(self, features: Tensor) -> Tensor: ...


@runtime_checkable
class KVDenoiser(Denoiser, Protocol):
    """A denoiser that can also reuse keys and values (an optional capability: a sampler's
    ``kv_cache`` uses it only where ``kv_capable`` is True).

    ``features_kv(ids, at, kv, reuse)`` -> (features (N, H) at ``at`` (B, L), ``kv``): the
    keys and values at the ``reuse`` (B, L) positions are taken from ``kv``, a tensor with one
    row per sequence (what is in a row is the denoiser's business; None on a first call), and
    the rest are computed and written back into the ``kv`` returned.
    """

    kv_capable: bool

    def features_kv(
        self, ids: Tensor, at: Tensor, kv: Tensor | None, reuse: Tensor
    ) -> tuple[Tensor, Tensor]: ...


class NetworkDenoiser:
    """Adapts an encoder ``(ids) -> hidden`` and an LM head ``(hidden) -> logits``.

    An encoder whose signature has an ``at`` keyword (``NTv2Encoder``) computes only the asked
    positions in its last block; any other is run in full and indexed.

    Runs without gradients; ``autocast`` (e.g. ``torch.bfloat16``) runs the encoder under
    autocast on the ids' device, while logits always come back in float32. ``nfe`` counts the
    sequences passed through the encoder, for benchmarks. An encoder with a ``forward_kv``
    method (``NTv2Encoder``) makes it a :class:`KVDenoiser`.
    """

    time_conditioned = False

    def __init__(
        self,
        encoder: Callable[[Tensor], Tensor],
        head: Callable[[Tensor], Tensor],
        mask_id: int,
        vocab_size: int,
        autocast: torch.dtype | None = None,
    ) -> None:
        self.encoder, self.head = encoder, head
        self.mask_id, self.vocab_size = mask_id, vocab_size
        self.autocast = autocast
        self.nfe = 0
        self._sparse = takes_keyword(encoder, "at")
        self.kv_capable = callable(getattr(encoder, "forward_kv", None))

    def _context(self, device: torch.device) -> contextlib.AbstractContextManager[object]:
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.autocast)

    @torch.no_grad()
    def features(self, ids: Tensor, at: Tensor | None = None) -> Tensor:
        self.nfe += ids.shape[0]
        with self._context(ids.device):
            if at is None:
                return self.encoder(ids)
            return self.encoder(ids, at=at) if self._sparse else self.encoder(ids)[at]

    @torch.no_grad()
    def features_kv(
        self, ids: Tensor, at: Tensor, kv: Tensor | None, reuse: Tensor
    ) -> tuple[Tensor, Tensor]:
        if not self.kv_capable:
            raise TypeError(f"{type(self.encoder).__name__} has no forward_kv")
        self.nfe += ids.shape[0]
        with self._context(ids.device):
            return self.encoder.forward_kv(ids, at, kv, reuse)  # type: ignore[attr-defined]

    @torch.no_grad()
    def logits(self, features: Tensor) -> Tensor:
        with self._context(features.device):
            out = self.head(features).float()
        out[..., self.mask_id] = float("-inf")
        return out
