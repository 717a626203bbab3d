"""Intervals, paired differences, verdicts and power (d3lm.stats) against independent
computations on synthetic seeds whose true difference is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from d3lm import stats


def test_a_seed_interval_is_the_t_interval_written_out():
    x = [1.9, 2.3, 2.1, 1.7]
    half = sps.t.ppf(0.975, 3) * np.std(x, ddof=1) / math.sqrt(4)
    got = stats.seed_interval(x)
    assert (got.mean, got.low, got.high, got.seeds) == pytest.approx(
        (np.mean(x), np.mean(x) - half, np.mean(x) + half, 4)
    )
    one = stats.seed_interval([3.0])
    assert one.mean == 3.0 and one.seeds == 1 and math.isnan(one.low)
    assert stats.seed_interval([2.0, 2.0, 2.0]).low == 2.0  # no spread: a point interval


def test_the_paired_difference_is_scipys_paired_t_test():
    point = {0: 1.2, 1: 1.5, 2: 1.1, 3: 1.9}
    reference = {0: 1.0, 1: 1.1, 2: 1.2, 3: 1.3, 9: 7.0}  # seed 9 has no partner: left out
    seeds = sorted(point)
    test = sps.ttest_rel([point[s] for s in seeds], [reference[s] for s in seeds])
    expected = test.confidence_interval(0.95)
    got = stats.paired_difference(point, reference)
    assert (got.low, got.high, got.seeds) == pytest.approx((expected.low, expected.high, 4))


def synthetic(difference: float, seeds: int, rng: np.random.Generator):
    """Per-seed values of a reference point and another point sharing each seed's model: a
    seed effect both see (training noise, SD 1) plus each point's own sampling noise (0.1)."""
    shared = rng.normal(0, 1, seeds)
    ref = {s: 5 + shared[s] + rng.normal(0, 0.1) for s in range(seeds)}
    point = {s: 5 + difference + shared[s] + rng.normal(0, 0.1) for s in range(seeds)}
    return point, ref


def test_verdicts_of_known_differences():
    rng = np.random.default_rng(0)
    point, ref = synthetic(0.0, 3, rng)
    assert stats.verdict(stats.paired_difference(point, ref), "min") == stats.SAME
    point, ref = synthetic(1.0, 3, rng)  # 10 sampling SDs: pairing removes the seed effect
    assert stats.verdict(stats.paired_difference(point, ref), "min") == stats.WORSE
    assert stats.verdict(stats.paired_difference(point, ref), "max") == stats.BETTER
    assert stats.verdict(stats.paired_difference(ref, point), "min") == stats.BETTER
    one = stats.paired_difference({0: 9.0}, {0: 1.0})
    assert stats.verdict(one, "min") == stats.UNDECIDED
    with pytest.raises(ValueError, match="goal"):
        stats.verdict(one, "real")


def test_a_zero_difference_is_called_indistinguishable_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    words = [
        stats.verdict(stats.paired_difference(*synthetic(0.0, 3, rng)), "min") for _ in range(2000)
    ]
    share = words.count(stats.SAME) / len(words)
    assert abs(share - 0.95) < 3 * math.sqrt(0.95 * 0.05 / len(words))


def test_power_matches_a_simulated_paired_t_test():
    rng = np.random.default_rng(2)
    delta, sd, seeds = 0.5, 0.6, 6
    diffs = rng.normal(delta, sd, (4000, seeds))
    rejected = np.mean(sps.ttest_1samp(diffs, 0, axis=1).pvalue < 0.05)
    assert stats.power(seeds, delta, sd) == pytest.approx(rejected, abs=0.03)
    assert stats.power(1, delta, sd) == 0.0


def test_seeds_needed_is_the_textbook_sample_size():
    # paired t, two-sided 5 %, 80 % power: an effect of one SD needs 10 pairs
    assert stats.seeds_needed(1.0, 1.0) == 10
    assert stats.seeds_needed(0.5, 1.0) > stats.seeds_needed(1.0, 1.0)
    assert stats.seeds_needed(1.0, 1.0, target=0.9) > 10
    assert stats.seeds_needed(1e-6, 1.0, most=50) is None


def test_more_samples_shrink_only_the_sampling_part():
    assert stats.projected_sd(0.5, 0.09, 1000, 1000) == pytest.approx(0.5)
    assert stats.projected_sd(0.5, 0.09, 1000, 4000) == pytest.approx(math.sqrt(0.16 + 0.0225))
    assert stats.projected_sd(0.2, 0.09, 1000, 10**9) == pytest.approx(0.0, abs=1e-3)
    # a sampling estimate above the whole spread counts as all of it, never more
    assert stats.projected_sd(0.2, 0.09, 1000, 4000) == pytest.approx(0.1)
