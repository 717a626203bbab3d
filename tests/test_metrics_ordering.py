"""The metrics must order sets as they should, on real-shaped data made here.

"Real" = a CpG-depleted first-order Markov background with one of four cell-type motifs planted
twice per sequence; its label is the motif. A second real draw must beat a dinucleotide shuffle
(composition kept, motifs destroyed), which must beat uniform random DNA.
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from d3lm.baselines import UniformGenerator, dinucleotide_shuffle
from d3lm.metrics.features import KmerFeatures, OracleFeatures
from d3lm.metrics.features.oracle import load_oracle
from d3lm.metrics.frechet import frechet_distance
from d3lm.metrics.motifs import Motif, MotifScanner, compare_rates
from d3lm.oracle.train import OracleConfig, train_oracle

MOTIFS = ["TGACTCAT", "CCGGAAGT", "AGATAAGG", "CACGTGAC"]
TRANSITION = np.array(
    [
        [0.40, 0.20, 0.25, 0.15],
        [0.35, 0.30, 0.05, 0.30],
        [0.30, 0.25, 0.30, 0.15],
        [0.15, 0.20, 0.25, 0.40],
    ]
)


def labelled_sequences(n: int, length: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    cumulative = TRANSITION.cumsum(1)
    codes = np.empty((n, length), dtype=np.int64)
    state = rng.integers(0, 4, n)
    for j in range(length):
        state = (rng.random(n)[:, None] > cumulative[state]).sum(1).clip(max=3)
        codes[:, j] = state
    bases = np.array(list("ACGT"))
    labels = rng.integers(0, 4, n)
    seqs = []
    for row, label in zip(codes, labels, strict=True):
        text = list(bases[row])
        motif = MOTIFS[label]
        for start in rng.choice(length - len(motif), size=2, replace=False):
            text[start : start + len(motif)] = motif
        seqs.append("".join(text)[:length])
    return seqs, [f"type{label}" for label in labels]


@pytest.fixture(scope="module")
def sets() -> dict[str, list[str]]:
    real_a, _ = labelled_sequences(400, 100, seed=1)
    real_b, _ = labelled_sequences(400, 100, seed=2)
    rng = random.Random(0)
    return {
        "real_a": real_a,
        "real_b": real_b,
        "shuffled": [dinucleotide_shuffle(s, rng) for s in real_b],
        "uniform": UniformGenerator().sample(400, 100, seed=3),
    }


@pytest.fixture(scope="module")
def oracle_path(tmp_path_factory: pytest.TempPathFactory):
    seqs, labels = labelled_sequences(2400, 100, seed=5)
    splits = ["train"] * 2000 + ["valid"] * 200 + ["test"] * 200
    data = tmp_path_factory.mktemp("oracle") / "cells.parquet"
    pd.DataFrame({"sequence": seqs, "label": labels, "split": splits}).to_parquet(data)
    config = OracleConfig(channels=32, width=32, epochs=3, seed=0)
    return train_oracle(data, data.parent / "cache", config), data, config


def assert_ordered(features, sets) -> None:
    ref = features(sets["real_a"])
    fd = {name: frechet_distance(ref, features(sets[name])) for name in sets if name != "real_a"}
    assert fd["real_b"] < fd["shuffled"] < fd["uniform"], fd


def test_kmer_fd_orders_real_shuffled_uniform(sets):
    assert_ordered(KmerFeatures(), sets)


def test_oracle_learns_task_caches_and_orders_sets(oracle_path, sets):
    path, data, config = oracle_path
    _, meta = load_oracle(path)
    assert meta["test_accuracy"] > 0.6  # four classes: chance is 0.25
    assert train_oracle(data, data.parent / "cache", config) == path  # cached, not retrained
    assert_ordered(OracleFeatures(checkpoint=path), sets)


def test_motif_correlation_real_beats_shuffled(sets):
    rng = np.random.default_rng(0)
    decoys = ["".join(rng.choice(list("ACGT"), 7)) for _ in range(16)]
    motifs = [
        Motif(f"m{i}", text, np.array([[20.0 * (b == c) for c in text] for b in "ACGT"]))
        for i, text in enumerate(MOTIFS + decoys)
    ]
    scanner = MotifScanner(motifs, threshold=0.9)
    real = scanner.rates(sets["real_a"])
    assert real[:4].min() > 2 * real[4:].max()  # planted motifs stand out
    vs_real = compare_rates(real, scanner.rates(sets["real_b"]))
    vs_shuffled = compare_rates(real, scanner.rates(sets["shuffled"]))
    assert vs_real["motif_corr"] > vs_shuffled["motif_corr"]
    assert vs_real["motif_js"] < vs_shuffled["motif_js"]
