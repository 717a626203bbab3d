"""Remasking of committed tokens (ReMDM, Wang et al. 2025): each committed token in the
block is masked again with probability sigma_t, which lets later steps fix early mistakes.

sigma_max = min(1, (1 - alpha_s) / alpha_t) keeps the schedule's marginals valid; it is 0 on the
last step, so sampling still ends fully unmasked. Variants: ``remdm_cap`` min(eta, sigma_max),
``remdm_rescale`` eta * sigma_max, ``remdm_conf`` sigma_max redistributed over committed tokens
by softmax(-confidence at commit), so unsure tokens are remasked first (same expected total).
"""

from __future__ import annotations

import torch
from torch import Tensor

from d3lm.params import NonNegativeFloat
from d3lm.registry import REMASKERS
from d3lm.sampling import rng
from d3lm.sampling.base import Remasker, StepContext


@REMASKERS.register("none")
class NoRemask(Remasker):
    """Committed tokens stay (MDLM, LLaDA, the paper)."""

    def __call__(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        return torch.zeros_like(ctx.masked), ctx.sigma


def _sigma_max(ctx: StepContext) -> float:
    return min(1.0, (1 - ctx.alpha_s) / ctx.alpha_t) if ctx.alpha_t > 0 else 0.0


class _Uniform(Remasker):
    def __init__(self, eta: NonNegativeFloat = 0.02) -> None:
        self.eta = eta

    def sigma(self, ctx: StepContext) -> float:
        raise NotImplementedError

    def __call__(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        sigma = self.sigma(ctx)
        remask = (ctx.stream(rng.REMASK) < sigma) & ctx.committed
        return remask, torch.full_like(ctx.sigma, sigma)


@REMASKERS.register("remdm_cap")
class ReMDMCap(_Uniform):
    """sigma_t = min(eta, sigma_max)."""

    def sigma(self, ctx: StepContext) -> float:
        return min(self.eta, _sigma_max(ctx))


@REMASKERS.register("remdm_rescale")
class ReMDMRescale(_Uniform):
    """sigma_t = eta * sigma_max."""

    def sigma(self, ctx: StepContext) -> float:
        return self.eta * _sigma_max(ctx)


@REMASKERS.register("remdm_conf")
class ReMDMConf(Remasker):
    """Per-token sigma = eta * sigma_max * n_committed * softmax(-confidence), capped at 1."""

    def __init__(self, eta: NonNegativeFloat = 1.0) -> None:
        self.eta = eta

    def __call__(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        sigma = self.eta * _sigma_max(ctx)
        weight = torch.softmax((-ctx.confidence).masked_fill(~ctx.committed, float("-inf")), -1)
        n = ctx.committed.sum(1, keepdim=True)
        per = (sigma * n * weight.nan_to_num(0.0)).clamp(max=1.0)
        remask = (ctx.stream(rng.REMASK) < per) & ctx.committed
        return remask, torch.full_like(ctx.sigma, sigma)
