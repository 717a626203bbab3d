"""How many eligible positions to commit per step.

``ancestral``: MDLM's posterior: each masked token is unmasked with probability
(alpha_s - (1 - sigma) alpha_t) / (1 - alpha_t) (sigma = 0 without remasking), so the count is
Binomial and zero on some steps (the network call is then skipped). ``fixed``: LLaDA's
``get_num_transfer_tokens`` (masked / steps left, remainder to earlier steps), recomputed each
step so remasking is absorbed. ``threshold``: Fast-dLLM, every token whose top-1 probability
exceeds ``threshold``, at least one; all remaining on a block's last step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from d3lm.params import UnitInterval
from d3lm.registry import COMMIT_COUNTS
from d3lm.sampling import rng
from d3lm.sampling.base import CommitCount, StepContext


@COMMIT_COUNTS.register("ancestral")
class Ancestral(CommitCount):
    """Schedule-driven Binomial count (MDLM ancestral step from t to s)."""

    def __call__(self, ctx: StepContext) -> Tensor:
        if ctx.steps_left == 1 or ctx.alpha_t >= 1.0:
            p = torch.ones_like(ctx.sigma)  # a block's last step commits everything left
        else:
            p = ((ctx.alpha_s - (1 - ctx.sigma) * ctx.alpha_t) / (1 - ctx.alpha_t)).clamp(0, 1)
        return ((ctx.stream(rng.COUNT) < p[:, None]) & ctx.eligible).sum(1)


@COMMIT_COUNTS.register("fixed")
class Fixed(CommitCount):
    """ceil(masked / steps left): the same number every step, all done on the last."""

    def __call__(self, ctx: StepContext) -> Tensor:
        return -(-ctx.eligible.sum(1) // ctx.steps_left)


@COMMIT_COUNTS.register("threshold")
class Threshold(CommitCount):
    """Every eligible token with top-1 probability above ``threshold`` (at least one)."""

    needs_logits = True

    def __init__(self, threshold: UnitInterval = 0.9) -> None:
        self.threshold = threshold

    def __call__(self, ctx: StepContext) -> Tensor:
        assert ctx.probs is not None
        n = ctx.eligible.sum(1)
        if ctx.steps_left == 1:
            return n
        sure = ((ctx.scatter(ctx.probs.amax(-1), 0.0) > self.threshold) & ctx.eligible).sum(1)
        return torch.maximum(sure, n.clamp(max=1))
