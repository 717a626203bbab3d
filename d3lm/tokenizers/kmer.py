"""Non-overlapping k-mer tokenisers: ``kmer`` (k = 1..6) and ``nt6mer`` (NT v2's exact vocab)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch

from d3lm.registry import TOKENIZERS
from d3lm.tokenizers.base import N_CODE, NUCLEOTIDES, SPECIAL_TOKENS, Tokenizer

MAX_K = 6


@TOKENIZERS.register(
    "kmer", examples=[*({"k": k} for k in range(1, MAX_K + 1)), {"k": 3, "add_cls": False}]
)
class KmerTokenizer(Tokenizer):
    """Non-overlapping k-mers, k = 1..6: NT v2's scheme generalised to any k.

    Vocabulary: the six specials (ids 0..5), the 4**k k-mers in
    ``itertools.product("ATCG", repeat=k)`` order, then the single nucleotides ``A T C G N``
    (for k = 1 the k-mers are the singles, so only ``N`` follows). The sequence is split on N;
    each N is its own token and each N-free run is cut into k-mers left to right, its tail of
    fewer than k nucleotides becoming single-nucleotide tokens, so every length round-trips.

    >>> tok = KmerTokenizer(k=3, add_cls=False)
    >>> tok.encode("ATCGANT")
    [12, 73, 70, 74, 71]
    >>> [tok.vocab[i] for i in tok.encode("ATCGANT")]
    ['ATC', 'G', 'A', 'N', 'T']
    """

    def __init__(self, k: int = 6, add_cls: bool = True) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise ValueError(f"k must be an integer in 1..{MAX_K}, got {k!r}")
        kmers = ["".join(p) for p in itertools.product(NUCLEOTIDES, repeat=k)]
        singles = [*NUCLEOTIDES, "N"] if k > 1 else ["N"]
        super().__init__(
            [*SPECIAL_TOKENS, *kmers, *singles], nucleotides_per_token=k, add_cls=add_cls
        )
        self.k = k
        self._kmer_offset = len(SPECIAL_TOKENS)
        # For k = 1 the k-mers double as singles; in both cases single code c has id offset + c.
        self._single_offset = self._kmer_offset + (len(kmers) if k > 1 else 0)
        self._n_id = self._single_offset + N_CODE

    def _kmer_ids(self, codes: np.ndarray) -> np.ndarray:
        """Ids of N-free rows of equal length, (B, n) codes -> (B, n // k + n % k)."""
        rows, n = codes.shape
        whole = n // self.k * self.k
        digits = codes[:, :whole].reshape(rows, -1, self.k)
        kmers = np.full(digits.shape[:2], self._kmer_offset, dtype=np.int64)
        for j in range(self.k):  # base-4 number, first nucleotide most significant
            kmers += digits[..., j].astype(np.int64) * len(NUCLEOTIDES) ** (self.k - 1 - j)
        tail = codes[:, whole:].astype(np.int64) + self._single_offset
        return np.concatenate([kmers, tail], axis=1)

    def _tokenize(self, codes: np.ndarray) -> np.ndarray:
        is_n = codes == N_CODE
        if not is_n.any():
            return self._kmer_ids(codes[None])[0]
        bounds = [0, *(np.flatnonzero(np.diff(is_n.view(np.int8))) + 1).tolist(), len(codes)]
        return np.concatenate(
            [
                np.full(end - start, self._n_id, dtype=np.int64)
                if is_n[start]
                else self._kmer_ids(codes[None, start:end])[0]
                for start, end in itertools.pairwise(bounds)
            ]
        )

    def batch_encode(
        self,
        seqs: Sequence[str],
        names: Sequence[str] | None = None,
        length: int | None = None,
    ) -> torch.Tensor:
        """Vectorised :meth:`Tokenizer.batch_encode`.

        All rows are validated in one table lookup; N-free rows of equal length are tokenised
        together by arithmetic on the codes; only rows containing N go one by one.
        """
        names = self._row_names(seqs, names)
        codes, starts, lengths = self._batch_codes(seqs, names)
        n_positions = np.flatnonzero(codes == N_CODE)
        has_n = np.zeros(len(seqs), dtype=bool)
        has_n[np.searchsorted(starts + lengths, n_positions, side="right")] = True
        with_n = {
            int(i): self._tokenize(codes[starts[i] : starts[i] + lengths[i]])
            for i in np.flatnonzero(has_n)
        }
        first = int(self.add_cls)
        counts = first + lengths // self.k + lengths % self.k
        for i, ids in with_n.items():
            counts[i] = first + len(ids)
        out = np.full((len(seqs), self._width(counts, names, length)), self.pad_id, np.int64)
        out[:, :first] = self.cls_id
        for n in np.unique(lengths[~has_n]):
            rows = np.flatnonzero(~has_n & (lengths == n))
            if rows.size == len(seqs):  # the common case: one length, no N; no gather needed
                rows, group = slice(None), codes.reshape(len(seqs), n)  # type: ignore[assignment]
            else:
                group = codes[starts[rows, None] + np.arange(n)]
            ids = self._kmer_ids(group)
            out[rows, first : first + ids.shape[1]] = ids
        for i, ids in with_n.items():
            out[i, first : first + len(ids)] = ids
        return torch.from_numpy(out)

    def layout(self, n_bp: int) -> torch.Tensor:
        if n_bp < 0:
            raise ValueError(f"n_bp must be >= 0, got {n_bp}")
        n_kmers, n_singles = divmod(n_bp, self.k)
        first = int(self.add_cls)
        # Built in numpy: small torch fills pay thread start-up costs, which a sampler calling
        # this per batch would feel on a shared CPU.
        legal = np.zeros((first + n_kmers + n_singles, self.vocab_size), dtype=bool)
        legal[:first, self.cls_id] = True
        kmer_end = self._kmer_offset + len(NUCLEOTIDES) ** self.k
        legal[first : first + n_kmers, self._kmer_offset : kmer_end] = True
        acgt_end = self._single_offset + len(NUCLEOTIDES)
        legal[first + n_kmers :, self._single_offset : acgt_end] = True
        return torch.from_numpy(legal)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k}, add_cls={self.add_cls})"


@TOKENIZERS.register("nt6mer", examples=[{}, {"add_cls": False}])
class NT6merTokenizer(KmerTokenizer):
    """Nucleotide Transformer v2's tokeniser, id for id (vocab_size 4107).

    ``<unk> <pad> <mask> <cls> <eos> <bos>`` = 0..5, ``AAAAAA`` = 6, the 4096 6-mers in
    ``itertools.product("ATCG", repeat=6)`` order, then ``A T C G N`` = 4102..4106. Like the
    HuggingFace tokenizer it prepends ``<cls>`` and appends no ``<eos>``.

    >>> tok = NT6merTokenizer()
    >>> tok.encode("ATCGAATNGG")  # ATCGAA T N G G
    [3, 438, 4103, 4106, 4105, 4105]
    >>> tok.decode([3, 438, 4103, 4106, 4105, 4105])
    'ATCGAATNGG'
    """

    def __init__(self, add_cls: bool = True) -> None:
        super().__init__(k=6, add_cls=add_cls)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(add_cls={self.add_cls})"
