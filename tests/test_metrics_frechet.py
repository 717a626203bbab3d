import numpy as np
import pytest
import scipy.linalg
import torch

from d3lm.metrics.frechet import FrechetDistance, frechet_distance, frechet_from_moments


def scipy_frechet(x1: np.ndarray, x2: np.ndarray) -> float:
    mu1, mu2 = x1.mean(0), x2.mean(0)
    s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def random_gaussian(rng, n, d, shift):
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mix + shift


@pytest.mark.parametrize("d", [3, 16, 64])
def test_agrees_with_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    x1, x2 = random_gaussian(rng, 500, d, 0.0), random_gaussian(rng, 400, d, 0.3)
    assert frechet_distance(torch.from_numpy(x1), torch.from_numpy(x2)) == pytest.approx(
        scipy_frechet(x1, x2), abs=1e-6
    )


def test_identical_sets_give_zero():
    x = torch.from_numpy(random_gaussian(np.random.default_rng(0), 300, 32, 1.0))
    assert frechet_distance(x, x.clone()) == pytest.approx(0.0, abs=1e-8)


def test_closed_form_for_known_gaussians():
    # commuting: FD = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 1.0])
    mu1, mu2 = torch.zeros(3), torch.tensor([1.0, 2.0, 0.0])
    expected = 5.0 + float(((a.sqrt() - b.sqrt()) ** 2).sum())
    assert frechet_from_moments(mu1, a.diag(), mu2, b.diag()) == pytest.approx(expected, abs=1e-12)
    # against the identity: Tr (I S)^(1/2) = sum sqrt(eig(S)), for a non-diagonal S
    s = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)  # eigenvalues 1 and 3
    expected = 2 + 4 - 2 * (1 + 3**0.5)
    assert frechet_from_moments(mu1[:2], torch.eye(2), mu1[:2], s) == pytest.approx(expected)


def test_sample_space_path_matches_covariance_path():
    rng = np.random.default_rng(1)
    x1, x2 = random_gaussian(rng, 20, 120, 0.0), random_gaussian(rng, 30, 120, 0.5)
    fast = frechet_distance(torch.from_numpy(x1), torch.from_numpy(x2))  # d > n1 + n2
    t1, t2 = torch.from_numpy(x1), torch.from_numpy(x2)
    slow = frechet_from_moments(t1.mean(0), t1.T.cov(), t2.mean(0), t2.T.cov())
    assert fast == pytest.approx(slow, rel=1e-6)


def test_metric_accumulates_batches_and_checks_shapes():
    rng = np.random.default_rng(2)
    x1, x2 = torch.from_numpy(random_gaussian(rng, 200, 8, 0.0)), torch.randn(150, 8)
    metric = FrechetDistance()
    for chunk in x1.split(64):
        metric.update(chunk, real=True)
    for chunk in x2.split(50):
        metric.update(chunk, real=False)
    assert float(metric.compute()) == pytest.approx(frechet_distance(x1, x2), rel=1e-10)
    with pytest.raises(ValueError, match="same d"):
        frechet_distance(x1, x2[:, :4])
