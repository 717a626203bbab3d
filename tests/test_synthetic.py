"""Synthetic sets of known entropy: each claimed entropy checked against an independent estimate."""

import math

import numpy as np
import pytest

from d3lm.data.synthetic import CopySet, MarkovSet, MotifSet, _stationary
from d3lm.registry import DATASETS


def test_registered_and_deterministic():
    for name in ("copy", "markov", "motifs"):
        assert name in DATASETS
    a, b = CopySet(n=50, length=20, seed=3).frame(), CopySet(n=50, length=20, seed=3).frame()
    assert a.equals(b)
    assert not a.equals(CopySet(n=50, length=20, seed=4).frame())


def test_splits_are_disjoint_and_sized():
    frame = MarkovSet(n=400, length=30).frame()
    counts = frame["split"].value_counts().to_dict()
    assert counts == {"train": 360, "valid": 20, "test": 20}
    assert frame["name"].is_unique


def test_copy_halves_are_equal_and_halves_uniform():
    frame = CopySet(n=400, length=40).frame()
    seqs = frame["sequence"]
    assert all(s[:20] == s[20:] for s in seqs)
    freq = np.array([sum(s[:20].count(b) for s in seqs) for b in "ACGT"]) / (400 * 20)
    assert np.allclose(freq, 0.25, atol=0.01)
    assert CopySet().bits_per_nt() == 1.0
    with pytest.raises(ValueError, match="even"):
        CopySet(length=41)


def test_markov_stationary_is_stationary():
    chain = MarkovSet(order=2)
    table = chain.transitions()
    pi = _stationary(table, 2)
    # one step of the chain maps pi to itself: P(next state s') = sum_s pi(s) P(s -> s')
    step = np.zeros(16)
    for s in range(16):
        for base in range(4):
            step[(s * 4) % 16 + base] += pi[s] * table[s, base]
    assert np.allclose(step, pi, atol=1e-12)


def test_markov_entropy_matches_empirical_log_likelihood():
    """Mean -log2 p(sequence) under the true chain over many draws estimates the entropy."""
    chain = MarkovSet(n=3000, length=60, order=2, concentration=0.5, seed=1)
    table, pi = chain.transitions(), _stationary(chain.transitions(), 2)
    codes = chain.codes(np.random.default_rng(chain.seed))
    state = codes[:, 0] * 4 + codes[:, 1]
    bits = -np.log2(pi[state])
    for j in range(2, chain.length):
        bits -= np.log2(table[state, codes[:, j]])
        state = (state * 4) % 16 + codes[:, j]
    estimate = bits.mean() / chain.length
    stderr = bits.std() / math.sqrt(len(bits)) / chain.length
    assert abs(estimate - chain.bits_per_nt()) < 4 * stderr
    assert chain.bits_per_nt() < 1.9  # context matters: well below a context-free 2 bits


def test_motifs_at_fixed_spacing():
    s = MotifSet(n=200, length=80, motif=6, spacing=10)
    a, b = ("".join("ATCG"[c] for c in m) for m in s.motifs())
    for seq in s.frame()["sequence"]:
        starts = [i for i in range(80 - 6 + 1) if seq[i : i + 6] == a]
        assert any(seq[p + 16 : p + 22] == b for p in starts)
    expected = (math.log2(80 - 12 - 10 + 1) + 2 * (80 - 12)) / 80
    assert s.bits_per_nt() == pytest.approx(expected)
    with pytest.raises(ValueError, match="too short"):
        MotifSet(length=20, motif=8, spacing=10).positions()
