"""Novelty: each generated sequence's normalised Hamming distance to its nearest training sequence.

Reported as the mean and median nearest distance and the fraction of exact copies (a memorising
model scores 0 / 1). Below ``exact_pairs`` generated x training pairs the search is exhaustive.
Above it, a k-mer index proposes for each generated sequence the ``candidates`` training
sequences that share the most k-mers (k-mers present in more than ``max_hits`` training
sequences carry no information and are skipped) and only those are compared exactly; a generated
sequence that shares no informative k-mer with any training sequence is searched exhaustively.
The index can miss a nearest sequence that shares fewer k-mers than ``candidates`` others, which
only happens far from a copy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from d3lm.metrics.composition import encode_concatenated, kmer_windows
from d3lm.metrics.diversity import hamming_matrix


def _nearest_exhaustive(gen: Sequence[str], train: Sequence[str], chunk: int) -> np.ndarray:
    best = np.full(len(gen), np.inf)
    for start in range(0, len(train), chunk):
        block = hamming_matrix(gen, train[start : start + chunk]).min(dim=1).values.numpy()
        best = np.minimum(best, block)
    return best


def _kmer_table(seqs: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(k-mer, sequence id) of every valid window, unique per pair, sorted by k-mer."""
    codes = encode_concatenated(seqs)
    owner = np.repeat(np.arange(len(seqs)), [len(s) + 1 for s in seqs])[: len(codes)]
    index, valid = kmer_windows(codes, k)
    keys = np.unique(index[valid] * len(seqs) + owner[: len(index)][valid])
    return keys // len(seqs), keys % len(seqs)


def _nearest_indexed(
    gen: Sequence[str], train: Sequence[str], k: int, candidates: int, max_hits: int
) -> np.ndarray:
    train_kmers, train_ids = _kmer_table(train, k)
    gen_kmers, gen_ids = _kmer_table(gen, k)
    lo = np.searchsorted(train_kmers, gen_kmers, side="left")
    hi = np.searchsorted(train_kmers, gen_kmers, side="right")
    keep = (hi > lo) & (hi - lo <= max_hits)
    lo, hi, gen_ids = lo[keep], hi[keep], gen_ids[keep]
    sizes = hi - lo
    offsets = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    hit_train = train_ids[np.repeat(lo, sizes) + offsets]
    hit_gen = np.repeat(gen_ids, sizes)
    pair, shared = np.unique(hit_gen * len(train) + hit_train, return_counts=True)
    best = np.full(len(gen), np.inf)
    by_gen = pair // len(train)
    for g in np.unique(by_gen):
        rows = np.flatnonzero(by_gen == g)
        top = rows[np.argsort(-shared[rows], kind="stable")[:candidates]]
        picks = [train[t] for t in pair[top] % len(train)]
        best[g] = float(hamming_matrix([gen[g]], picks).min())
    missing = np.flatnonzero(~np.isfinite(best))  # no informative k-mer shared: search all
    if len(missing):
        best[missing] = _nearest_exhaustive([gen[g] for g in missing], train, 4096)
    return best


def novelty(
    gen: Sequence[str],
    train: Sequence[str],
    exact_pairs: int = 50_000_000,
    k: int = 12,
    candidates: int = 32,
    max_hits: int = 200,
    chunk: int = 4096,
) -> dict[str, float]:
    """``nearest_mean``, ``nearest_median`` (normalised Hamming) and ``fraction_copies``."""
    if not gen or not train:
        raise ValueError(f"novelty needs both sets non-empty, got {len(gen)} and {len(train)}")
    train_set = set(train)
    copies = float(np.mean([s in train_set for s in gen]))
    if len(gen) * len(train) <= exact_pairs:
        nearest = _nearest_exhaustive(gen, train, chunk)
    else:
        nearest = _nearest_indexed(gen, train, k, candidates, max_hits)
    return {
        "nearest_mean": float(nearest.mean()),
        "nearest_median": float(np.median(nearest)),
        "fraction_copies": copies,
    }
