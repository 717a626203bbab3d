"""Shared fixtures: tiny real-shaped data made in the tests, never downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import DictConfig

from d3lm.config import load_config


def markov_sequences(n: int, length: int, seed: int = 0) -> list[str]:
    """Sequences from a fixed first-order chain with CpG depletion and a planted motif.

    Real enough for a model to learn something in a few steps (the chain is far from uniform),
    small enough to train on in seconds.
    """
    rng = np.random.default_rng(seed)
    bases = np.array(list("ACGT"))
    transition = np.array(
        [
            [0.40, 0.20, 0.25, 0.15],
            [0.35, 0.30, 0.05, 0.30],  # C -> G rare: CpG depletion, as in real DNA
            [0.30, 0.25, 0.30, 0.15],
            [0.15, 0.20, 0.25, 0.40],
        ]
    )
    cumulative = transition.cumsum(axis=1)
    out = []
    for _ in range(n):
        state = rng.integers(4)
        draws = rng.random(length)
        seq = np.empty(length, dtype=np.int64)
        for i in range(length):
            state = int(np.searchsorted(cumulative[state], draws[i]))
            seq[i] = state
        text = "".join(bases[seq])
        start = rng.integers(0, length - 8)
        out.append(text[:start] + "TATAAAAG" + text[start + 8 :])
    return out


def micro_config(table: Path, root: Path, *overrides: str) -> DictConfig:
    """The ``micro`` config training on ``table``, with its runs and caches under ``root``."""
    base = [f"data.dataset={table}", f"runs_dir={root}", f"cache_dir={root / 'cache'}"]
    return load_config("micro", overrides=[*base, *overrides])


@pytest.fixture(scope="session")
def dna_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A parquet with ``name, sequence, split, label`` of 60-bp sequences (train/valid/test)."""
    seqs = markov_sequences(480, 60, seed=1)
    splits = ["train"] * 384 + ["valid"] * 48 + ["test"] * 48
    frame = pd.DataFrame(
        {
            "name": [f"seq{i}" for i in range(len(seqs))],
            "sequence": seqs,
            "split": splits,
            "label": ["a", "b"] * (len(seqs) // 2),
        }
    )
    path = tmp_path_factory.mktemp("data") / "fixture.parquet"
    frame.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Run a module single-threaded (tiny tensors: threads only contend), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
