"""Kernel distance (KID): unbiased polynomial-kernel MMD² between two feature sets.

Fréchet distance is biased upwards by roughly 1/n (its covariance estimates are noisy), so FD at
n = 256 and at n = 1,000 cannot be compared; the unbiased MMD² estimator has expectation zero for
two samples of one distribution at any n. KID is its mean (and std) over random equal-size
subsets of both sets, with the kernel k(x, y) = (x·y / d + 1)³.

torchmetrics' ``KernelInceptionDistance`` takes a feature module, but it recomputes the three
kernel matrices for every subset: 100 subsets of 1,000 took 25 s per scored set here, for each
feature space and each set of every table. Here the kernels (torchmetrics' ``poly_kernel``) are
computed once on the whole sets, and the estimator's sums over all subsets come from one product
with the subsets' weight matrix (0/1 per subset; bootstrap counts in
:mod:`d3lm.metrics.intervals`). The draws are torchmetrics' (``torch.randperm`` of the real set,
then of the fake set, per subset) from a forked generator seeded with ``seed``, so the values
equal torchmetrics' under the same global seed (``tests/test_kernel_distance.py``) at a small
fraction of the cost, and a score is a pure function of the two sets and the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchmetrics.image.kid import poly_kernel

#: Defaults of ``evaluate.kid``: torchmetrics' 100 subsets of 1,000 (cut to the smaller set).
SUBSETS = 100
SUBSET_SIZE = 1000


def check_features(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sets as float64 (n, d) with one d and at least 2 rows each."""
    real, fake = (torch.as_tensor(x, dtype=torch.float64) for x in (real, fake))
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        shapes = f"{tuple(real.shape)} and {tuple(fake.shape)}"
        raise ValueError(f"features must be (n, d) with the same d, got {shapes}")
    if min(len(real), len(fake)) < 2:
        raise ValueError(f"need at least 2 samples per set, got {len(real)} and {len(fake)}")
    return real, fake


@dataclass(frozen=True)
class Kernels:
    """The three kernel matrices of a (real, fake) pair, computed once."""

    real: torch.Tensor  # (m, m)
    cross: torch.Tensor  # (m, n)
    fake: torch.Tensor  # (n, n)

    @classmethod
    def of(
        cls, real: torch.Tensor, fake: torch.Tensor, real_kernel: torch.Tensor | None = None
    ) -> Kernels:
        """``real_kernel``: ``poly_kernel(real, real)`` when already computed (a reference
        scored against many sets)."""
        real, fake = check_features(real, fake)
        if real_kernel is None:
            real_kernel = poly_kernel(real, real)
        return cls(real_kernel, poly_kernel(real, fake), poly_kernel(fake, fake))

    def mmd2(self, w_real: torch.Tensor, w_fake: torch.Tensor) -> torch.Tensor:
        """Unbiased MMD² per column of the weight matrices (m, k) and (n, k): each column
        counts how often a draw took each row (0/1 for a subset; a bootstrap resample repeats
        rows). Pairs of a row with itself are left out, so repeats do not inflate the within-set
        means; for 0/1 columns this is torchmetrics' estimator."""
        cross = ((self.cross @ w_fake) * w_real).sum(0) / (w_real.sum(0) * w_fake.sum(0))
        return _pair_mean(self.real, w_real) + _pair_mean(self.fake, w_fake) - 2 * cross


def _pair_mean(kernel: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per column of ``weights``, the mean kernel value over pairs of two different rows."""
    squared = weights.square()
    pairs = ((kernel @ weights) * weights).sum(0) - (kernel.diagonal()[:, None] * squared).sum(0)
    return pairs / (weights.sum(0).square() - squared.sum(0))


@dataclass(frozen=True)
class KidSpec:
    """``evaluate.kid``: the subsets KID averages over."""

    subsets: int = SUBSETS
    subset_size: int = SUBSET_SIZE


def against_reference(
    real: torch.Tensor,
    fake: torch.Tensor,
    kid: KidSpec,
    seed: int,
    cache: dict[str, torch.Tensor],
    key: str,
) -> tuple[float, float, Kernels]:
    """KID (mean, std) of ``fake`` against a reference ``real`` scored against many sets, its
    kernel computed once and kept in ``cache`` under ``key``; the kernels, for intervals."""
    kernels = Kernels.of(real, fake, cache.get(key))
    cache[key] = kernels.real
    mean, std = kernel_distance(real, fake, kid.subsets, kid.subset_size, seed, kernels)
    return mean, std, kernels


def kernel_distance(
    real: torch.Tensor,
    fake: torch.Tensor,
    subsets: int = SUBSETS,
    subset_size: int = SUBSET_SIZE,
    seed: int = 0,
    kernels: Kernels | None = None,
) -> tuple[float, float]:
    """(mean, population std) of the unbiased MMD² over ``subsets`` random subsets of
    ``subset_size`` (or the smaller set's size, if less) drawn from each set (``kernels``:
    those of these two sets, when already computed)."""
    kernels = kernels or Kernels.of(real, fake)
    m, n = len(kernels.real), len(kernels.fake)
    size = min(subset_size, m, n)
    picks_real = torch.zeros(m, subsets, dtype=torch.float64)
    picks_fake = torch.zeros(n, subsets, dtype=torch.float64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for s in range(subsets):
            picks_real[torch.randperm(m)[:size], s] = 1
            picks_fake[torch.randperm(n)[:size], s] = 1
    scores = kernels.mmd2(picks_real, picks_fake)
    return float(scores.mean()), float(scores.std(unbiased=False))
