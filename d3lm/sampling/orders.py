"""Unmasking orders: which eligible positions commit first.

``random`` is the D3LM paper's default (best for DNA); the others rank by the denoiser's
certainty (LLaDA ``low_confidence``, Dream ``maskgit_plus`` / ``topk_margin`` / ``entropy``).
``noise`` > 0 adds Gumbel noise times ``noise`` to the scores: Dream's soft choice
``alg_temp``, i.e. sampling positions from softmax(score / noise) without replacement.
"""

from __future__ import annotations

import torch
from torch import Tensor

from d3lm.params import NonNegativeFloat
from d3lm.registry import UNMASK_ORDERS
from d3lm.sampling import rng
from d3lm.sampling.base import StepContext, UnmaskOrder, gumbel, stream_scores


@UNMASK_ORDERS.register("random")
class RandomOrder(UnmaskOrder):
    """Uniformly random positions; needs no logits, so the head runs only where committing."""

    def scores(self, ctx: StepContext) -> Tensor:
        return stream_scores(ctx)


class CertaintyOrder(UnmaskOrder):
    """Base of logit-reading orders: ``certainty(probs)`` (N, V) -> (N,), higher first."""

    needs_logits = True

    def __init__(self, noise: NonNegativeFloat = 0.0) -> None:
        self.noise = noise

    def certainty(self, probs: Tensor) -> Tensor:
        raise NotImplementedError

    def scores(self, ctx: StepContext) -> Tensor:
        assert ctx.probs is not None
        score = ctx.scatter(self.certainty(ctx.probs), float("-inf"))
        if self.noise:
            score = score + self.noise * gumbel(ctx.stream(rng.ORDER))
        return score


@UNMASK_ORDERS.register("confidence")
class ConfidenceOrder(CertaintyOrder):
    """Highest top-1 probability first (MaskGIT, LLaDA low_confidence remasking)."""

    def certainty(self, probs: Tensor) -> Tensor:
        return probs.amax(-1)


@UNMASK_ORDERS.register("margin")
class MarginOrder(CertaintyOrder):
    """Largest top-1 minus top-2 probability first (Dream topk_margin)."""

    def certainty(self, probs: Tensor) -> Tensor:
        top = probs.topk(2, dim=-1).values
        return top[:, 0] - top[:, 1]


@UNMASK_ORDERS.register("entropy")
class EntropyOrder(CertaintyOrder):
    """Lowest entropy first (Dream entropy)."""

    def certainty(self, probs: Tensor) -> Tensor:
        return torch.special.xlogy(probs, probs).sum(-1)
