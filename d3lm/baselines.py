"""Baseline generators that every generation table carries as rows, registered in ``GENERATORS``.

Each is the simplest thing a user might try instead of a diffusion model, so a metric that cannot
tell a generated set from these has not measured anything a model learned:

- ``uniform``: i.i.d. uniform bases (the ceiling of every distance).
- ``shuffle``: real sequences with their dinucleotide counts kept exactly (Altschul-Erickson):
  composition right, motifs destroyed.
- ``markov``: an order-k Markov chain fitted on the training split (default k = 5): every
  (k+1)-mer statistic right, nothing longer-range.

Usage: ``GENERATORS.build(name, params).fit(train_seqs).sample(n, length, seed)``.
"""

from __future__ import annotations

import itertools
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from d3lm.errors import D3lmError
from d3lm.metrics.composition import ALPHABET, encode_concatenated, kmer_counts_codes
from d3lm.params import PositiveFloat
from d3lm.registry import GENERATORS

_BASES = np.array(list(ALPHABET))


class BaselineGenerator(ABC):
    """Fit on real sequences, then draw ``n`` sequences of ``length`` bp from a seed.

    ``fit_on`` says which real sequences an evaluation should fit it on: ``"train"`` (the
    training split, what a user's model sees) or ``"real"`` (the held-out real row).
    """

    fit_on = "train"

    def fit(self, train: Sequence[str]) -> BaselineGenerator:
        return self

    @abstractmethod
    def sample(self, n: int, length: int, seed: int = 0) -> list[str]: ...


def _decode(codes: np.ndarray) -> list[str]:
    return ["".join(row) for row in _BASES[codes]]


@GENERATORS.register("uniform")
class UniformGenerator(BaselineGenerator):
    """I.i.d. uniform A, C, G, T."""

    def sample(self, n: int, length: int, seed: int = 0) -> list[str]:
        return _decode(np.random.default_rng(seed).integers(0, 4, size=(n, length)))


def dinucleotide_shuffle(seq: str, rng: random.Random) -> str:
    """A uniformly random sequence with exactly the dinucleotide counts (and ends) of ``seq``.

    Altschul & Erickson (1985): pick a random spanning arborescence of "last exits" into the
    final letter, shuffle every other exit list, then walk the resulting Eulerian path.
    """
    if len(seq) < 3:
        return seq
    exits: dict[str, list[str]] = {}
    for a, b in itertools.pairwise(seq):
        exits.setdefault(a, []).append(b)
    end = seq[-1]
    while True:
        last = {v: rng.choice(out) for v, out in exits.items() if v != end}
        if all(_reaches(v, end, last) for v in last):
            break
    for v, out in exits.items():
        if v != end:
            out.remove(last[v])
        rng.shuffle(out)
        if v != end:
            out.append(last[v])
    position = dict.fromkeys(exits, 0)
    letters = [seq[0]]
    for _ in range(len(seq) - 1):
        v = letters[-1]
        letters.append(exits[v][position[v]])
        position[v] += 1
    return "".join(letters)


def _reaches(v: str, end: str, last: dict[str, str]) -> bool:
    seen = set()
    while v != end:
        if v in seen:
            return False
        seen.add(v)
        v = last[v]
    return True


@GENERATORS.register("shuffle")
class ShuffleGenerator(BaselineGenerator):
    """Dinucleotide-shuffled real sequences from the fitted set, centre-cropped to ``length``."""

    fit_on = "real"  # the shuffled twin of the real row: differs from it only in order

    def fit(self, train: Sequence[str]) -> ShuffleGenerator:
        self.train = list(train)
        return self

    def sample(self, n: int, length: int, seed: int = 0) -> list[str]:
        pool = [s for s in self.train if len(s) >= length]
        if not pool:
            raise D3lmError(f"shuffle: no fitted sequence is at least {length} bp long")
        rng = random.Random(seed)
        picks = [pool[rng.randrange(len(pool))] for _ in range(n)]
        crops = [s[(len(s) - length) // 2 :][:length] for s in picks]
        return [dinucleotide_shuffle(s, rng) for s in crops]


@GENERATORS.register("markov")
class MarkovGenerator(BaselineGenerator):
    """Order-k Markov chain over ACGT; windows with other letters are ignored when fitting.

    The first k bases come from the fitted k-mer frequencies; ``pseudocount`` keeps contexts never
    seen in training defined (uniform next base).
    """

    def __init__(self, k: int = 5, pseudocount: PositiveFloat = 1.0) -> None:
        if k < 1:
            raise D3lmError(f"markov: order k must be >= 1, got {k}")
        self.k, self.pseudocount = k, pseudocount

    def fit(self, train: Sequence[str]) -> MarkovGenerator:
        codes = encode_concatenated(train)
        counts = kmer_counts_codes(codes, self.k + 1).reshape(4**self.k, 4) + self.pseudocount
        self.cdf = np.cumsum(counts / counts.sum(1, keepdims=True), axis=1)
        start = kmer_counts_codes(codes, self.k).astype(np.float64)
        if start.sum() == 0:
            raise D3lmError(f"markov: no {self.k}-mer of ACGT in the training sequences")
        self.start_cdf = np.cumsum(start / start.sum())
        return self

    def sample(self, n: int, length: int, seed: int = 0) -> list[str]:
        rng = np.random.default_rng(seed)
        out = np.zeros((n, max(length, self.k)), dtype=np.int64)
        state = np.minimum(
            np.searchsorted(self.start_cdf, rng.random(n), side="right"), 4**self.k - 1
        )
        for j in range(self.k):
            out[:, j] = state // 4 ** (self.k - 1 - j) % 4
        for j in range(self.k, length):
            nxt = (rng.random(n)[:, None] > self.cdf[state]).sum(1).clip(max=3)
            out[:, j] = nxt
            state = (state * 4 + nxt) % 4**self.k
        return _decode(out[:, :length])
