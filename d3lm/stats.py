"""Uncertainty of the suite's tables: intervals over seeds, seed-paired differences against a
grid's reference point, a verdict per difference, and the seeds a difference would need.

A table cell from one trained model is one draw of two noises: the training seed and the
sampling seed. Points of a sampling axis share each seed's model and sampling seed, so their
difference from the reference point cancels what the two share and is computed per seed first
(the pairing), then summarised over seeds with Student's t (scipy). With fewer than two seeds
there is no estimate of the training noise, and no verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: The words of a verdict.
BETTER, WORSE, SAME, UNDECIDED = "better", "worse", "indistinguishable", "undecided"


@dataclass(frozen=True)
class Interval:
    """A mean over ``seeds`` values with its two-sided interval (NaN bounds: fewer than 2)."""

    mean: float
    low: float
    high: float
    seeds: int

    def excludes_zero(self) -> bool:
        return self.seeds >= 2 and (self.low > 0 or self.high < 0)


def seed_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean and Student-t interval of per-seed values."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    if len(x) < 2:
        return Interval(float(x[0]), math.nan, math.nan, 1)
    sem = stats.sem(x)
    if sem == 0:  # identical values: no spread
        return Interval(float(x.mean()), float(x.mean()), float(x.mean()), len(x))
    low, high = stats.t.interval(confidence, len(x) - 1, loc=x.mean(), scale=sem)
    return Interval(float(x.mean()), float(low), float(high), len(x))


def proportion_interval(
    successes: int, trials: int, confidence: float = 0.95
) -> tuple[float, float, float]:
    """(rate, low, high): a success rate over ``trials`` (an oracle's accuracy on one sample
    set) with its Wilson score interval (scipy's binomial test), the noise of one set where a
    t interval over seeds needs several trained models; NaN without trials."""
    if trials < 1:
        return math.nan, math.nan, math.nan
    ci = stats.binomtest(successes, trials).proportion_ci(confidence, method="wilson")
    return successes / trials, float(ci.low), float(ci.high)


def paired_difference(
    point: Mapping[int, float], reference: Mapping[int, float], confidence: float = 0.95
) -> Interval:
    """``point - reference`` over the seeds both have, as an interval over seeds."""
    seeds = sorted(set(point) & set(reference))
    return seed_interval([point[s] - reference[s] for s in seeds], confidence)


def verdict(difference: Interval, goal: str) -> str:
    """One word for ``point - reference``: ``goal`` "min" (lower is better, a distance) or
    "max"; inside the interval is "indistinguishable"; fewer than 2 seeds "undecided"."""
    if goal not in ("min", "max"):
        raise ValueError(f"goal {goal!r}: expected 'min' or 'max'")
    if difference.seeds < 2:
        return UNDECIDED
    if not difference.excludes_zero():
        return SAME
    lower = difference.high < 0
    return BETTER if lower == (goal == "min") else WORSE


def power(seeds: int, delta: float, sd: float, confidence: float = 0.95) -> float:
    """Power of the two-sided paired t-test over ``seeds`` seeds to find a true difference
    ``delta`` when paired differences scatter with ``sd`` (noncentral t, scipy)."""
    if seeds < 2:
        return 0.0
    if sd <= 0:
        return 1.0
    df = seeds - 1
    critical = stats.t.ppf(0.5 + confidence / 2, df)
    shift = abs(delta) / (sd / math.sqrt(seeds))
    return float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift))


def seeds_needed(
    delta: float, sd: float, confidence: float = 0.95, target: float = 0.8, most: int = 10_000
) -> int | None:
    """The fewest seeds whose paired test finds ``delta`` with probability ``target``; None if
    more than ``most`` would be needed."""
    for seeds in range(2, most + 1):
        if power(seeds, delta, sd, confidence) >= target:
            return seeds
    return None


def projected_sd(sd: float, sampling_var: float, n: int, n_new: int) -> float:
    """The seed-to-seed SD of paired differences at ``n_new`` samples per point, from its value
    ``sd`` at ``n``: the sampling part (``sampling_var`` at ``n``, from the within-seed
    bootstrap) shrinks as 1/n, the training part stays. The sampling part is capped at the
    whole variance it is part of (two noisy estimates can disagree)."""
    sampling = min(sampling_var, sd**2)
    return math.sqrt(sd**2 - sampling + sampling * n / n_new)
