"""The Tokenizer contract: DNA text <-> token ids, with exact lengths for generation.

Every tokeniser shares the same six special tokens and the same alphabet rule, so samplers,
objectives and metrics never need to know which plugin made the ids.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from d3lm.errors import D3lmError

#: Special tokens, in NT v2's id order (``<unk>`` = 0 ... ``<bos>`` = 5).
SPECIAL_TOKENS = ("<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>")
#: Nucleotides in NT v2's k-mer order; a nucleotide's code is its index here, ``N`` is 4.
NUCLEOTIDES = "ATCG"
N_CODE = len(NUCLEOTIDES)
_INVALID = 255
_CODE_TABLE = np.full(256, _INVALID, dtype=np.uint8)
for _code, _base in enumerate(NUCLEOTIDES + "N"):
    _CODE_TABLE[ord(_base)] = _CODE_TABLE[ord(_base.lower())] = _code

IdsLike = Sequence[int] | torch.Tensor | np.ndarray


def _label(name: str | None) -> str:
    return "sequence" if name is None else f"record {name!r}"


def _invalid_nucleotide(name: str | None, index: int, char: str) -> ValueError:
    return ValueError(
        f"{_label(name)}: invalid nucleotide {char!r} at position {index + 1} "
        "(allowed: A, C, G, T, N)"
    )


class Tokenizer(abc.ABC):
    """Maps DNA over A, C, G, T, N to token ids and back.

    Alphabet rule: input is upper-cased; A, C, G, T and N are accepted and every other character,
    including the other IUPAC ambiguity codes (R, Y, K, M, S, W, B, D, H, V), raises a
    ``ValueError`` naming the record, the 1-based position and the character. Ambiguity codes are
    rejected rather than silently mapped to N, so no information is lost without the user
    knowing; users who want N-masking convert those codes to N before encoding.

    Subclasses supply the vocabulary, ``_tokenize`` (codes of one upper-cased sequence -> ids,
    without ``<cls>``) and ``layout``.
    """

    def __init__(
        self, vocab: Sequence[str], nucleotides_per_token: float, add_cls: bool = True
    ) -> None:
        self.vocab: list[str] = list(vocab)
        index = {token: i for i, token in enumerate(self.vocab)}
        if len(index) != len(self.vocab):
            raise D3lmError("vocabulary has duplicate tokens")
        missing = [t for t in SPECIAL_TOKENS if t not in index]
        if missing:
            raise D3lmError(f"vocabulary lacks special tokens {missing}")
        self.nucleotides_per_token = nucleotides_per_token
        self.add_cls = add_cls
        (self.unk_id, self.pad_id, self.mask_id, self.cls_id, self.eos_id, self.bos_id) = (
            index[t] for t in SPECIAL_TOKENS
        )
        self.special_ids: list[int] = [index[t] for t in SPECIAL_TOKENS]
        special = set(self.special_ids)
        # Decoding drops framing tokens; <mask> and <unk> carry no nucleotides and are errors.
        self._pieces = np.array(
            ["" if i in special else token for i, token in enumerate(self.vocab)], dtype=object
        )
        self._token_lengths = torch.tensor(
            [0 if i in special else len(token) for i, token in enumerate(self.vocab)],
            dtype=torch.long,
        )

    @classmethod
    def fit(cls, sequences: Sequence[str], params: Mapping[str, Any]) -> dict[str, Any]:
        """Constructor params completed with what is learned from the training ``sequences``.

        ``runner.train`` calls this for every plugin before building the model, so a learned
        tokeniser (``bpe``) travels in the checkpoint's hyperparameters and
        ``load_from_checkpoint`` alone rebuilds it. Fixed tokenisers learn nothing.
        """
        return dict(params)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def token_lengths(self) -> torch.Tensor:
        """Nucleotides each token decodes to, shape (vocab_size,); 0 for special tokens.

        Summed over a sequence's ids this is its length in bp, the denominator of bits per
        nucleotide, which makes losses comparable across tokenisers.
        """
        return self._token_lengths.clone()

    def nucleotide_codes(self) -> torch.Tensor:
        """(vocab, longest token) codes of the nucleotides each token spells (A, T, C, G, N = 0..4
        in ``NUCLEOTIDES + "N"`` order), -1 past its end and for special tokens: what a model needs
        to share statistics between tokens that contain the same bases."""
        width = int(self._token_lengths.max())
        table = np.full((self.vocab_size, width), -1, dtype=np.int64)
        for i, piece in enumerate(self._pieces):
            if piece:
                table[i, : len(piece)] = _CODE_TABLE[np.frombuffer(piece.encode(), dtype=np.uint8)]
        return torch.from_numpy(table)

    # -- encoding -----------------------------------------------------------------------------

    def encode(self, seq: str, name: str | None = None) -> list[int]:
        """Token ids of ``seq`` (``<cls>`` first if ``add_cls``); ``name`` labels errors."""
        ids = self._tokenize(self._codes(seq, name))
        return [self.cls_id, *ids.tolist()] if self.add_cls else ids.tolist()

    def batch_encode(
        self,
        seqs: Sequence[str],
        names: Sequence[str] | None = None,
        length: int | None = None,
    ) -> torch.Tensor:
        """Encode rows into a (B, L) LongTensor right-padded with ``pad_id``.

        L is the longest row, or ``length`` (a row longer than it raises). Without ``names``
        errors name rows as ``'row i'``.
        """
        names = self._row_names(seqs, names)
        rows = [self.encode(seq, name) for seq, name in zip(seqs, names, strict=True)]
        out = np.full(
            (len(rows), self._width([len(r) for r in rows], names, length)),
            self.pad_id,
            dtype=np.int64,
        )
        for i, row in enumerate(rows):
            out[i, : len(row)] = row
        return torch.from_numpy(out)

    @abc.abstractmethod
    def _tokenize(self, codes: np.ndarray) -> np.ndarray:
        """Ids (int64, no ``<cls>``) of one sequence given as nucleotide codes (``NUCLEOTIDES``
        index, ``N_CODE`` for N)."""

    @abc.abstractmethod
    def layout(self, n_bp: int) -> torch.Tensor:
        """Legal tokens per position, a (L, vocab_size) BoolTensor, for exactly ``n_bp`` of ACGT.

        L = ``len(encode("A" * n_bp))``; no position allows a special token except ``<cls>`` at
        position 0 when ``add_cls``. Any ids that obey the layout decode to exactly ``n_bp``
        nucleotides and re-encode to themselves, so samplers that choose only legal tokens never
        produce a sequence of the wrong length.
        """

    # -- decoding -----------------------------------------------------------------------------

    def decode(self, ids: IdsLike) -> str:
        """The nucleotides of ``ids`` (list or 1-D tensor); ``<pad> <cls> <eos> <bos>`` are
        skipped, ``<mask>``, ``<unk>`` and out-of-range ids raise naming their position."""
        if isinstance(ids, torch.Tensor):
            ids = ids.detach().cpu().numpy()
        arr = np.asarray(ids, dtype=np.int64)
        if arr.ndim != 1:
            raise D3lmError(f"decode takes one sequence of ids, got shape {tuple(arr.shape)}")
        bad = (arr < 0) | (arr >= self.vocab_size) | (arr == self.mask_id) | (arr == self.unk_id)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            what = self.vocab[arr[i]] if 0 <= arr[i] < self.vocab_size else "out of range"
            raise D3lmError(f"cannot decode id {int(arr[i])} ({what}) at token position {i}")
        return "".join(self._pieces[arr].tolist())

    def save_vocab(self, path: str | os.PathLike[str]) -> Path:
        """Write a HuggingFace-style ``vocab.txt`` (one token per line, in id order), so the
        vocabulary can be diffed against a pretrained model's."""
        path = Path(path)
        path.write_text("\n".join(self.vocab) + "\n", encoding="utf-8")
        return path

    # -- shared helpers -----------------------------------------------------------------------

    @staticmethod
    def _codes(seq: str, name: str | None) -> np.ndarray:
        """Nucleotide codes (uint8) of ``seq``; raises on characters outside ACGTN."""
        try:
            raw = seq.encode("ascii")
        except UnicodeEncodeError as err:
            raise _invalid_nucleotide(name, err.start, seq[err.start]) from None
        codes = _CODE_TABLE[np.frombuffer(raw, dtype=np.uint8)]
        bad = np.flatnonzero(codes == _INVALID)
        if bad.size:
            raise _invalid_nucleotide(name, int(bad[0]), seq[bad[0]])
        return codes

    @staticmethod
    def _batch_codes(
        seqs: Sequence[str], names: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Codes of all rows concatenated, with row starts and lengths, validated in one pass."""
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        ends = np.cumsum(lengths)
        starts = ends - lengths
        joined = "".join(seqs)
        try:
            codes = _CODE_TABLE[np.frombuffer(joined.encode("ascii"), dtype=np.uint8)]
            bad = np.flatnonzero(codes == _INVALID)
            first_bad = int(bad[0]) if bad.size else None
        except UnicodeEncodeError as err:
            first_bad = err.start
        if first_bad is not None:
            row = int(np.searchsorted(ends, first_bad, side="right"))
            raise _invalid_nucleotide(names[row], first_bad - int(starts[row]), joined[first_bad])
        return codes, starts, lengths

    @staticmethod
    def _row_names(seqs: Sequence[str], names: Sequence[str] | None) -> list[str]:
        if names is None:
            return [f"row {i}" for i in range(len(seqs))]
        if len(names) != len(seqs):
            raise D3lmError(f"got {len(names)} names for {len(seqs)} sequences")
        return list(names)

    @staticmethod
    def _width(counts: Sequence[int] | np.ndarray, names: Sequence[str], length: int | None) -> int:
        """Padded width of a batch whose rows have ``counts`` tokens."""
        counts = np.asarray(counts, dtype=np.int64)
        if length is None:
            return int(counts.max(initial=0))
        too_long = np.flatnonzero(counts > length)
        if too_long.size:
            i = int(too_long[0])
            raise D3lmError(
                f"{_label(names[i])}: {int(counts[i])} tokens do not fit length={length}"
            )
        return length

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, add_cls={self.add_cls})"
