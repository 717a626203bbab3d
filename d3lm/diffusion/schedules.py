"""Noise schedules of absorbing-state (masked) diffusion.

``alpha(t)`` is the probability that a token is still clean at time t in [0, 1] (1 at t = 0,
about 0 at t = 1). The continuous-time ELBO weights the cross-entropy of a masked token by
``weight(t) = -alpha'(t) / (1 - alpha(t))``.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from d3lm.registry import SCHEDULES


class NoiseSchedule(abc.ABC):
    """alpha(t), its derivative, and the ELBO weight derived from them once, here."""

    @abc.abstractmethod
    def alpha(self, t: Tensor) -> Tensor:
        """Probability that a token is still clean at time t."""

    @abc.abstractmethod
    def alpha_prime(self, t: Tensor) -> Tensor:
        """d alpha / d t (non-positive)."""

    def weight(self, t: Tensor) -> Tensor:
        """-alpha'(t) / (1 - alpha(t)), computed in float64 because 1 - alpha(t) cancels
        catastrophically at small t in float32 (e.g. cosine at t = 1e-3 loses ~5 %)."""
        t64 = t.double()
        return (-self.alpha_prime(t64) / (1.0 - self.alpha(t64))).to(t.dtype)


@SCHEDULES.register("linear")
@dataclass(frozen=True)
class Linear(NoiseSchedule):
    """alpha = 1 - t, weight = 1/t (the D3LM paper's Eq. 2, LLaDA)."""

    def alpha(self, t: Tensor) -> Tensor:
        return 1.0 - t

    def alpha_prime(self, t: Tensor) -> Tensor:
        return torch.full_like(t, -1.0)


@SCHEDULES.register("cosine")
@dataclass(frozen=True)
class Cosine(NoiseSchedule):
    """alpha = cos(pi/2 t): masks slowly at first, weight = (pi/2) sin / (1 - cos)."""

    def alpha(self, t: Tensor) -> Tensor:
        return torch.cos(0.5 * math.pi * t)

    def alpha_prime(self, t: Tensor) -> Tensor:
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)


@SCHEDULES.register("loglinear")
@dataclass(frozen=True)
class LogLinear(NoiseSchedule):
    """MDLM's log-linear noise: sigma(t) = -log(1 - (1 - eps) t), so alpha = 1 - (1 - eps) t.

    alpha(1) = eps leaves a token clean with probability eps at t = 1 (MDLM keeps sigma finite
    that way); the weight is still exactly 1/t, as (1 - eps) cancels.
    """

    eps: float = 1e-3

    def __post_init__(self) -> None:
        if not 0.0 <= self.eps < 1.0:
            raise ValueError(f"loglinear eps must lie in [0, 1), got {self.eps}")

    def alpha(self, t: Tensor) -> Tensor:
        return 1.0 - (1.0 - self.eps) * t

    def alpha_prime(self, t: Tensor) -> Tensor:
        return torch.full_like(t, -(1.0 - self.eps))


@SCHEDULES.register("polynomial", examples=[{}, {"p": 3}])
@dataclass(frozen=True)
class Polynomial(NoiseSchedule):
    """alpha = 1 - t^p, weight = p / t; p > 1 keeps more tokens clean early, p < 1 fewer."""

    p: float = 2.0

    def __post_init__(self) -> None:
        if self.p <= 0:
            raise ValueError(f"polynomial p must be positive, got {self.p}")

    def alpha(self, t: Tensor) -> Tensor:
        return 1.0 - t**self.p

    def alpha_prime(self, t: Tensor) -> Tensor:
        return -self.p * t ** (self.p - 1.0)
