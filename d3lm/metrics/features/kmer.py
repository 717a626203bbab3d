"""``kmer`` features: concatenated normalised k-mer spectra of each sequence; no weights."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from d3lm.metrics.composition import encode_concatenated, kmer_windows
from d3lm.metrics.features.base import FeatureExtractor
from d3lm.registry import FEATURE_EXTRACTORS


@FEATURE_EXTRACTORS.register("kmer")
class KmerFeatures(FeatureExtractor):
    """Per-sequence overlapping k-mer frequencies for each k in ``ks``, concatenated.

    Blind to anything beyond k bases: a k-th order Markov chain matches real data here, which is
    why the headline offline metric is ``oracle``.
    """

    def __init__(self, ks: Sequence[int] = (1, 2, 3, 4, 5, 6)) -> None:
        self.ks = tuple(ks)
        self.dim = sum(4**k for k in self.ks)

    def __call__(self, seqs: Sequence[str]) -> torch.Tensor:
        codes = encode_concatenated(seqs)
        # sequence id of every position; separators belong to no sequence
        owner = np.repeat(np.arange(len(seqs)), [len(s) + 1 for s in seqs])[: len(codes)]
        blocks = []
        for k in self.ks:
            index, valid = kmer_windows(codes, k)
            flat = owner[: len(index)][valid] * 4**k + index[valid]
            counts = np.bincount(flat, minlength=len(seqs) * 4**k).reshape(len(seqs), 4**k)
            totals = counts.sum(1, keepdims=True)
            blocks.append(counts / np.maximum(totals, 1))
        return torch.from_numpy(np.concatenate(blocks, axis=1))
