"""Bootstrap interval of a scored set's KID over its own samples: the sampling noise.

One trained model sampled once gives one KID; drawing the samples again would move it.
``scipy.stats.bootstrap`` resamples the scored set with replacement (the reference fixed) and
recomputes the whole-set unbiased MMD²; the interval is KID ± z · that bootstrap standard error.
A resample repeats about a third of its sequences: :meth:`Kernels.mmd2` leaves out the pairs of a
sequence with its own copy, so the resampled values are not shifted, and their spread matched
fresh draws (standard error 1.14e-3 against an SD of 1.11e-3 over 20 new sets of 1,000 x 128
Gaussian features; ``tests/test_kernel_distance.py`` checks this within a factor).

FD gets no such interval: the same resampling overstated its sampling SD threefold there (0.25
against 0.088), because repeated rows shrink the covariance and shift every resampled FD (6.6,
resamples 10.2-11.2). Its noise is shown by the spread over seeds instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from d3lm.metrics.kernel import Kernels


@dataclass(frozen=True)
class Bootstrap:
    """``evaluate.intervals``: which feature spaces get a KID interval, and how."""

    features: tuple[str, ...] = ("oracle",)
    resamples: int = 200
    confidence: float = 0.95


def kid_interval(
    kernels: Kernels, spec: Bootstrap, estimate: float, seed: int = 0
) -> tuple[float, float]:
    """(low, high) around the KID ``estimate`` from the bootstrap standard error of the
    whole-set MMD² when the fake set of ``kernels`` is resampled (the real one is the
    reference)."""
    n = len(kernels.fake)

    def statistic(index: np.ndarray, axis: int = -1) -> np.ndarray:
        draws = torch.from_numpy(np.array(np.atleast_2d(index)))  # (resamples, n)
        counts = torch.stack([torch.bincount(d, minlength=n) for d in draws], 1).double()
        everyone = torch.ones(len(kernels.real), len(draws), dtype=torch.float64)
        return kernels.mmd2(everyone, counts).numpy()

    result = stats.bootstrap(
        (np.arange(n),),
        statistic,
        n_resamples=spec.resamples,
        confidence_level=spec.confidence,
        method="percentile",  # only the standard error is used: no jackknife (BCa) needed
        vectorized=True,
        batch=50,
        random_state=np.random.default_rng(seed),
    )
    half = stats.norm.ppf(0.5 + spec.confidence / 2) * float(result.standard_error)
    return estimate - half, estimate + half
