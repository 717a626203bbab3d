"""The feature-extractor interface and the one-hot encoding shared by the network extractors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch

from d3lm.metrics.composition import encode_concatenated


class FeatureExtractor(ABC):
    """Maps DNA strings to features (n, dim); Fréchet distances compare their Gaussian fits."""

    dim: int

    @abstractmethod
    def __call__(self, seqs: Sequence[str]) -> torch.Tensor: ...

    @property
    def provenance(self) -> dict[str, object]:
        """What identifies this instrument in a result row, so rows scored by different networks
        are never mixed unseen; empty for extractors whose features depend on no trained weights
        (or on weights named elsewhere)."""
        return {}


def one_hot(seqs: Sequence[str], length: int | None = None) -> torch.Tensor:
    """One-hot (n, 4, length) in ACGT channel order; N and other codes are 0.25 in every channel.

    Each sequence is centred in the window: shorter ones are padded with N on both sides (the
    extra base, for odd padding, on the right), longer ones are centre-cropped. ``length`` defaults
    to the longest sequence.
    """
    length = max((len(s) for s in seqs), default=0) if length is None else length
    out = np.full((len(seqs), length), 4, dtype=np.uint8)
    for row, seq in enumerate(seqs):
        codes = encode_concatenated([seq])
        if len(codes) > length:
            start = (len(codes) - length) // 2
            codes = codes[start : start + length]
        left = (length - len(codes)) // 2
        out[row, left : left + len(codes)] = codes
    table = np.concatenate([np.eye(4, dtype=np.float32), np.full((1, 4), 0.25, np.float32)])
    return torch.from_numpy(table[out]).permute(0, 2, 1).contiguous()
