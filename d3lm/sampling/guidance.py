"""Classifier-free guidance (Ho & Salimans 2022) as a denoiser wrapper, so every sampler (orders,
counts, remaskers, the feature cache, the sparse head, merged cohorts, the dKV cache) guides
with no code of its own.

A conditional model reads its class from a *condition token* in one slot of the ids
(:mod:`d3lm.conditioning`), so the unconditional pass is the same ids with that token swapped
for the null token. One network call runs both passes (each sequence twice, interleaved), the
features carry both (concatenated on the last dimension, so a feature cache and cohort merging
see one feature per position), and the head mixes the two logits:
``(1 + w) * cond - w * uncond``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from d3lm.sampling.denoiser import Denoiser


class GuidedDenoiser:
    """``inner`` guided with weight ``weight`` >= 0 towards the condition token at ``position``,
    against ``null_id`` there. ``nfe`` counts sequences through the network like
    ``NetworkDenoiser.nfe``: a call on B sequences counts 2B (both passes).

    Weight 0 is the conditional model up to float rounding; a caller wanting it exactly uses
    ``inner`` itself (:func:`guided`)."""

    def __init__(self, inner: Denoiser, weight: float, null_id: int, position: int = 0) -> None:
        if not weight >= 0:
            raise ValueError(f"guidance weight must be >= 0, got {weight}")
        self.inner, self.weight = inner, float(weight)
        self.null_id, self.position = null_id, position
        self.mask_id, self.vocab_size = inner.mask_id, inner.vocab_size
        self.time_conditioned = inner.time_conditioned
        self.kv_capable = bool(getattr(inner, "kv_capable", False))
        self.nfe = 0

    def _pair(self, ids: Tensor) -> Tensor:
        """(2B, L): each row, then the same row with the null token: rows 2b and 2b + 1."""
        null = ids.clone()
        null[:, self.position] = self.null_id
        return torch.stack([ids, null], 1).flatten(0, 1)

    @staticmethod
    def _twice(mask: Tensor) -> Tensor:
        return mask.repeat_interleave(2, dim=0)

    @staticmethod
    def _join(feats: Tensor, at: Tensor | None) -> Tensor:
        """The inner features of the paired rows -> (..., 2H): conditional, then unconditional."""
        if at is None:  # (2B, L, H)
            pairs = feats.unflatten(0, (-1, 2))
            return torch.cat([pairs[:, 0], pairs[:, 1]], -1)
        # (2N, H) in row-major order: row b's positions (conditional), then the same (null)
        counts = at.sum(1).repeat_interleave(2)
        null = torch.arange(len(counts), device=at.device).remainder(2).repeat_interleave(counts)
        return torch.cat([feats[null == 0], feats[null == 1]], -1)

    def features(self, ids: Tensor, at: Tensor | None = None) -> Tensor:
        self.nfe += 2 * ids.shape[0]
        pairs = self._pair(ids)
        if at is None:
            return self._join(self.inner.features(pairs), None)
        return self._join(self.inner.features(pairs, self._twice(at)), at)

    def features_kv(
        self, ids: Tensor, at: Tensor, kv: Tensor | None, reuse: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The inner ``features_kv`` on both passes; a sequence's ``kv`` row holds the inner's
        rows of its two passes (stacked on dim 1), so the inner updates them in place."""
        if not self.kv_capable:
            raise TypeError(f"{type(self.inner).__name__} has no features_kv")
        self.nfe += 2 * ids.shape[0]
        flat = None if kv is None else kv.flatten(0, 1)
        feats, out = self.inner.features_kv(  # type: ignore[attr-defined]
            self._pair(ids), self._twice(at), flat, self._twice(reuse)
        )
        kept = kv if kv is not None and out is flat else out.unflatten(0, (-1, 2))
        return self._join(feats, at), kept

    def logits(self, features: Tensor) -> Tensor:
        cond, uncond = (self.inner.logits(half).float() for half in features.chunk(2, -1))
        finite = cond.isfinite() & uncond.isfinite()
        mixed = (1 + self.weight) * cond - self.weight * uncond
        out = torch.where(finite, mixed, float("-inf"))
        out[..., self.mask_id] = float("-inf")
        return out


def guided(inner: Denoiser, weight: float, null_id: int, position: int = 0) -> Denoiser:
    """``inner`` guided with ``weight``; weight 0 is ``inner`` itself (no second pass), so an
    unguided conditional sampler draws what it drew without guidance, bit for bit."""
    return inner if weight == 0 else GuidedDenoiser(inner, weight, null_id, position)
