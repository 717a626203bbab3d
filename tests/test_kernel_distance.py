"""KID (unbiased polynomial-kernel MMD²) and its bootstrap interval against independent
computations: torchmetrics' metric, a plain numpy double sum, and fresh draws."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torchmetrics.image.kid import KernelInceptionDistance

from d3lm.metrics.intervals import Bootstrap, kid_interval
from d3lm.metrics.kernel import Kernels, kernel_distance


def gaussian(n: int, d: int, shift: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen, dtype=torch.float64) + shift


def numpy_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased estimator written out: mean k over pairs i != j within each set, minus twice
    the mean k across, with k(a, b) = (a.b / d + 1)^3."""
    d = x.shape[1]

    def within(a: np.ndarray) -> float:
        k = (a @ a.T / d + 1) ** 3
        n = len(a)
        return (k.sum() - np.trace(k)) / (n * (n - 1))

    across = ((x @ y.T / d + 1) ** 3).mean()
    return within(x) + within(y) - 2 * across


def test_kid_equals_torchmetrics_with_the_same_draws():
    real, fake = gaussian(120, 8, 0.0, 1), gaussian(90, 8, 0.3, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=7, subset_size=40)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    torch.manual_seed(5)
    expected = [float(v) for v in metric.compute()]
    before = torch.random.get_rng_state()
    got = kernel_distance(real, fake, subsets=7, subset_size=40, seed=5)
    assert got == pytest.approx(expected, rel=1e-10)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global generator untouched


def test_whole_sets_equal_the_written_out_estimator():
    real, fake = gaussian(50, 6, 0.0, 3), gaussian(50, 6, 0.5, 4)
    mean, std = kernel_distance(real, fake, subsets=3, subset_size=50)
    assert mean == pytest.approx(numpy_mmd2(real.numpy(), fake.numpy()), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-12)  # every subset is the whole of both sets
    # unequal sizes and repeated rows (bootstrap counts): the weighted form against the same
    # sum over the materialised draw with pairs of a row with its own copy left out
    counts = torch.tensor([2.0, 0, 1, 3] + [1.0] * 46, dtype=torch.float64)
    kernels = Kernels.of(real[:30], fake)
    got = float(kernels.mmd2(torch.ones(30, 1, dtype=torch.float64), counts[:, None]))
    rows = np.repeat(np.arange(50), counts.long().numpy())
    y = fake.numpy()[rows]
    k = (y @ y.T / 6 + 1) ** 3
    same = rows[:, None] == rows[None, :]
    within_y = k[~same].mean()
    x = real[:30].numpy()
    kx = (x @ x.T / 6 + 1) ** 3
    within_x = (kx.sum() - np.trace(kx)) / (30 * 29)
    expected = within_x + within_y - 2 * ((x @ y.T / 6 + 1) ** 3).mean()
    assert got == pytest.approx(expected, rel=1e-10)


def test_kid_is_unbiased_where_fd_is_not():
    """Two samples of one distribution: KID averages to zero at n = 60 as at n = 400."""
    for n in (60, 400):
        scores = [
            kernel_distance(gaussian(n, 8, 0, s), gaussian(n, 8, 0, 100 + s), 5, n, s)[0]
            for s in range(12)
        ]
        assert abs(np.mean(scores)) < 3 * np.std(scores) / np.sqrt(len(scores))


def test_separated_sets_score_higher_than_one_distribution():
    real = gaussian(300, 8, 0.0, 7)
    same = kernel_distance(real, gaussian(300, 8, 0.0, 8), 20, 200)[0]
    apart = kernel_distance(real, gaussian(300, 8, 0.5, 9), 20, 200)[0]
    assert apart > 10 * abs(same)


def test_the_bootstrap_interval_matches_the_spread_of_fresh_samples():
    """The within-set interval's half-width / z is the standard error of KID over new draws
    of the scored set (the reference fixed), within a factor 1.5 either way."""
    real = gaussian(500, 8, 0.0, 10)
    spec = Bootstrap(resamples=200, confidence=0.95)
    fake = gaussian(300, 8, 0.2, 11)
    estimate = kernel_distance(real, fake, 10, 300)[0]
    low, high = kid_interval(Kernels.of(real, fake), spec, estimate, seed=0)
    assert low < estimate < high
    bootstrap_se = (high - low) / 2 / 1.959964
    fresh = [kernel_distance(real, gaussian(300, 8, 0.2, 20 + s), 10, 300)[0] for s in range(30)]
    assert 1 / 1.5 < bootstrap_se / np.std(fresh, ddof=1) < 1.5
    assert kid_interval(Kernels.of(real, fake), spec, estimate, seed=0) == (low, high)
