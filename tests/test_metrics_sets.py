"""Baselines, diversity and novelty on tiny sets with known answers."""

import collections
import itertools
import random

import numpy as np
import pytest

from d3lm.baselines import dinucleotide_shuffle
from d3lm.metrics.diversity import diversity, edit_distances, hamming_matrix
from d3lm.metrics.novelty import novelty
from d3lm.registry import GENERATORS


def dinucleotides(seq):
    return collections.Counter(itertools.pairwise(seq))


def test_dinucleotide_shuffle_keeps_counts_and_ends():
    rng = random.Random(0)
    seq = "".join(rng.choice("ACGT") for _ in range(300)) + "NNACG"
    outs = {dinucleotide_shuffle(seq, rng) for _ in range(5)}
    assert len(outs) == 5 and seq not in outs
    for out in outs:
        assert dinucleotides(out) == dinucleotides(seq)
        assert (out[0], out[-1]) == (seq[0], seq[-1])


def test_baselines_registered_and_shaped():
    train = ["ACGTTGCAAC" * 10, "GGGCCCATAT" * 10]
    for name in ("uniform", "shuffle", "markov"):
        seqs = GENERATORS.build(name).fit(train).sample(6, 40, seed=1)
        assert len(seqs) == 6 and {len(s) for s in seqs} == {40}
        assert seqs == GENERATORS.build(name).fit(train).sample(6, 40, seed=1)


def test_markov_recovers_transition_probabilities():
    rng = np.random.default_rng(0)
    p = np.array(
        [[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1], [0.25, 0.25, 0.25, 0.25]]
    )
    codes, state = [], 0
    for _ in range(20000):
        state = rng.choice(4, p=p[state])
        codes.append(state)
    train = ["".join("ACGT"[c] for c in codes)]
    sample = "".join(GENERATORS.build("markov", {"k": 1}).fit(train).sample(50, 400, seed=2))
    pairs = dinucleotides(sample)
    for a, row in zip("ACGT", p, strict=True):
        total = sum(pairs[(a, b)] for b in "ACGT")
        for b, expected in zip("ACGT", row, strict=True):
            assert pairs[(a, b)] / total == pytest.approx(expected, abs=0.03)


def naive_edit(a, b):
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def test_edit_distance_matches_naive_dp():
    rng = random.Random(1)
    pairs = [
        (
            "".join(rng.choice("ACGT") for _ in range(la)),
            "".join(rng.choice("ACGT") for _ in range(lb)),
        )
        for la, lb in [(0, 3), (5, 5), (5, 5), (12, 7), (30, 31), (1, 1)]
    ]
    assert edit_distances(pairs).tolist() == [naive_edit(a, b) for a, b in pairs]


def test_diversity_and_hamming_by_hand():
    assert hamming_matrix(["ACGT"], ["ACGA", "ACG", "ACGN"]).tolist() == [[0.25, 0.25, 0.25]]
    out = diversity(["AAAA", "AAAA", "AATT", "TTTT"], max_pairs=200, seed=0)
    assert out["fraction_unique"] == 0.75
    assert out["mean_hamming"] == pytest.approx((0 + 0.5 + 1 + 0.5 + 1 + 0.5) / 6)
    assert 0 < out["mean_edit"] <= 1


def test_novelty_index_agrees_with_exhaustive_search():
    rng = np.random.default_rng(3)
    train = ["".join(rng.choice(list("ACGT"), 120)) for _ in range(300)]
    gen = []
    for i in range(60):
        seq = list(train[i])
        for pos in rng.choice(120, size=i % 15, replace=False):
            seq[pos] = "ACGT"[(("ACGT".index(seq[pos])) + 1) % 4]
        gen.append("".join(seq))
    gen.append("".join(rng.choice(list("ACGT"), 120)))  # shares no 12-mer: exhaustive fallback
    exact = novelty(gen, train)
    indexed = novelty(gen, train, exact_pairs=0)
    assert indexed == pytest.approx(exact)
    assert exact["fraction_copies"] == pytest.approx(4 / 61)  # i = 0, 15, 30, 45
    assert exact["nearest_median"] == pytest.approx(7 / 120)
