"""Diversity of a set: fraction unique, mean pairwise normalised Hamming and edit distance.

Pairwise distances use a seeded random subsample (``max_sequences`` for Hamming, ``max_pairs``
for edit distance) because the all-pairs cost grows quadratically; both are normalised by the
longer sequence of the pair, so 0 = identical and ~0.75 = unrelated uniform random DNA (Hamming).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from d3lm.metrics.features.base import one_hot


def fraction_unique(seqs: Sequence[str]) -> float:
    return len(set(seqs)) / len(seqs) if seqs else float("nan")


def hamming_matrix(a: Sequence[str], b: Sequence[str]) -> torch.Tensor:
    """Normalised Hamming distances (len(a), len(b)); a length difference counts as mismatches."""
    length = max(max((len(s) for s in a), default=0), max((len(s) for s in b), default=0))
    # matching is counted on exact one-hot agreement, so N never matches and padding never does
    xa = (one_hot(a, length) == 1).flatten(1).float()
    xb = (one_hot(b, length) == 1).flatten(1).float()
    longer = torch.maximum(
        torch.tensor([len(s) for s in a])[:, None], torch.tensor([len(s) for s in b])[None, :]
    ).clamp(min=1)
    return 1 - (xa @ xb.T).double() / longer


def _edit_distance_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Levenshtein distances of equal-shape code arrays a (P, La), b (P, Lb), one DP row at a time.

    A row's insertion chain is a running minimum: new[j] = min_{j' <= j} (t[j'] + j - j').
    """
    steps = np.arange(b.shape[1] + 1)
    row = np.broadcast_to(steps, (len(a), len(steps))).astype(np.int64)
    for i in range(a.shape[1]):
        cost = (a[:, i : i + 1] != b).astype(np.int64)
        t = np.empty_like(row)
        t[:, 0] = i + 1
        t[:, 1:] = np.minimum(row[:, 1:] + 1, row[:, :-1] + cost)
        row = np.minimum.accumulate(t - steps, axis=1) + steps
    return row[:, -1]


def edit_distances(pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    """Levenshtein distance of each pair, vectorised over pairs of the same lengths."""
    out = np.zeros(len(pairs), dtype=np.int64)
    groups: dict[tuple[int, int], list[int]] = {}
    for index, (x, y) in enumerate(pairs):
        groups.setdefault((len(x), len(y)), []).append(index)
    for members in groups.values():
        a = np.array([np.frombuffer(pairs[i][0].encode(), np.uint8) for i in members])
        b = np.array([np.frombuffer(pairs[i][1].encode(), np.uint8) for i in members])
        out[members] = _edit_distance_rows(a.reshape(len(members), -1), b.reshape(len(members), -1))
    return out


def diversity(
    seqs: Sequence[str], max_sequences: int = 1000, max_pairs: int = 500, seed: int = 0
) -> dict[str, float]:
    """``fraction_unique``, ``mean_hamming`` and ``mean_edit`` (both normalised) of a set."""
    if len(seqs) < 2:
        raise ValueError(f"diversity needs at least 2 sequences, got {len(seqs)}")
    rng = np.random.default_rng(seed)
    subset = [seqs[i] for i in rng.permutation(len(seqs))[:max_sequences]]
    ham = hamming_matrix(subset, subset)
    upper = torch.triu_indices(len(subset), len(subset), offset=1)
    first = rng.integers(0, len(seqs), size=max_pairs)
    second = (first + rng.integers(1, len(seqs), size=max_pairs)) % len(seqs)
    pairs = [(seqs[i], seqs[j]) for i, j in zip(first, second, strict=True)]
    longer = np.array([max(len(x), len(y), 1) for x, y in pairs])
    return {
        "fraction_unique": fraction_unique(seqs),
        "mean_hamming": float(ham[upper[0], upper[1]].mean()),
        "mean_edit": float(np.mean(edit_distances(pairs) / longer)),
    }
