"""Fréchet distance between two feature sets, FD = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)).

Computed in float64. The matrix square root never goes through ``scipy.linalg.sqrtm`` (whose
Schur route turns complex and loses accuracy on near-singular covariances): Tr (S1 S2)^(1/2) is
the sum of square roots of the eigenvalues of the symmetric PSD matrix sqrt(S1) S2 sqrt(S1).
When the feature dimension exceeds a sample count (Sei's 21,907 outputs, k-mer spectra), the same
trace is the nuclear norm of the n1 x n2 matrix A B^T with S1 = A^T A, S2 = B^T B (A, B the
centred features over sqrt(n - 1)), which needs no d x d matrix at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from d3lm.metrics.features import FeatureExtractor


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    eigvals, eigvecs = torch.linalg.eigh(matrix)
    return (eigvecs * eigvals.clamp(min=0).sqrt()) @ eigvecs.T


def frechet_from_moments(
    mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor
) -> float:
    """FD of two Gaussians given means (d,) and covariances (d, d)."""
    mu1, sigma1, mu2, sigma2 = (t.to(torch.float64) for t in (mu1, sigma1, mu2, sigma2))
    root1 = _sqrt_psd(sigma1)
    inner = root1 @ sigma2 @ root1
    trace_sqrt = torch.linalg.eigvalsh(0.5 * (inner + inner.T)).clamp(min=0).sqrt().sum()
    fd = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt
    return float(fd.clamp(min=0))


def frechet_distance(x1: torch.Tensor, x2: torch.Tensor) -> float:
    """FD of the Gaussian fits (mean, unbiased covariance) of features x1 (n1, d) and x2 (n2, d)."""
    x1, x2 = torch.as_tensor(x1, dtype=torch.float64), torch.as_tensor(x2, dtype=torch.float64)
    if x1.ndim != 2 or x2.ndim != 2 or x1.shape[1] != x2.shape[1]:
        shapes = f"{tuple(x1.shape)} and {tuple(x2.shape)}"
        raise ValueError(f"features must be (n, d) with the same d, got {shapes}")
    if len(x1) < 2 or len(x2) < 2:
        raise ValueError(f"need at least 2 samples per set, got {len(x1)} and {len(x2)}")
    mu1, mu2 = x1.mean(0), x2.mean(0)
    a = (x1 - mu1) / (len(x1) - 1) ** 0.5
    b = (x2 - mu2) / (len(x2) - 1) ** 0.5
    if x1.shape[1] <= min(len(x1), len(x2)):
        return frechet_from_moments(mu1, a.T @ a, mu2, b.T @ b)
    # nuclear norm of C = A B^T as sum sqrt(eig(C C^T)) over the smaller side: a symmetric
    # eigensolve is many times faster than an SVD of the rectangular C on CPU
    cross = a @ b.T if len(a) <= len(b) else b @ a.T
    trace_sqrt = torch.linalg.eigvalsh(cross @ cross.T).clamp(min=0).sqrt().sum()
    fd = (mu1 - mu2).square().sum() + a.square().sum() + b.square().sum() - 2 * trace_sqrt
    return float(fd.clamp(min=0))


class FrechetDistance(Metric):
    """Accumulates real and generated features (gathered across processes) and computes their FD.

    With an ``extractor``, ``update`` takes sequences; without one, it takes feature tensors (n, d).
    Features are kept whole (``cat`` states) rather than as running moments so that the
    high-dimensional case can use the sample-space formula.
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, extractor: FeatureExtractor | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.extractor = extractor
        self.add_state("real", [], dist_reduce_fx="cat")
        self.add_state("fake", [], dist_reduce_fx="cat")

    def update(self, batch: Sequence[str] | torch.Tensor, real: bool) -> None:
        features = self.extractor(batch) if self.extractor is not None else batch
        features = torch.as_tensor(features, dtype=torch.float64)
        (self.real if real else self.fake).append(features)

    def compute(self) -> torch.Tensor:
        fd = frechet_distance(dim_zero_cat(self.real), dim_zero_cat(self.fake))
        return torch.tensor(fd, dtype=torch.float64)
