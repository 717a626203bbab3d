"""P2 path planning (Peng et al. 2025): each step a planner ranks *all* free positions in the
block, masked ones by the probability of the token just drawn there and committed ones by the
probability of their current token; the top (committed + count) are kept, so committed tokens
that fall out of the set are masked again. In D3LM this collapsed DNA composition (GC 12.7).
"""

from __future__ import annotations

import torch
from torch import Tensor

from d3lm.params import NonNegativeFloat
from d3lm.registry import UNMASK_ORDERS
from d3lm.sampling import rng
from d3lm.sampling.base import StepContext, UnmaskOrder, gumbel


@UNMASK_ORDERS.register("p2")
class P2Order(UnmaskOrder):
    """Self-planning: the denoiser's own probabilities score masked and committed positions;
    ``committed_weight`` scales committed scores (P2's eta: < 1 remasks more), ``noise`` adds
    Gumbel noise."""

    needs_logits = True
    replans = True

    def __init__(
        self, committed_weight: NonNegativeFloat = 1.0, noise: NonNegativeFloat = 0.0
    ) -> None:
        self.committed_weight, self.noise = committed_weight, noise

    def scores(self, ctx: StepContext) -> Tensor:
        assert ctx.probs is not None and ctx.draws is not None and ctx.at is not None
        masked = ctx.masked[ctx.at]
        token = torch.where(masked, ctx.draws, ctx.ids[ctx.at])
        p = ctx.probs.gather(-1, token.unsqueeze(-1)).squeeze(-1)
        p = ctx.scatter(torch.where(masked, p, self.committed_weight * p), float("-inf"))
        if self.noise:
            p = p + self.noise * gumbel(ctx.stream(rng.ORDER))
        return p
