"""``bpe``: byte-pair tokens learned from the run's training split (HuggingFace ``tokenizers``).

The merges are learned by ``BPETokenizer.fit`` (called by ``runner.train`` before the model is
built) and kept in the tokenizer params, i.e. in the checkpoint's hyperparameters, so a
checkpoint alone rebuilds the exact same ids.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from tokenizers import Regex, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from d3lm.registry import TOKENIZERS
from d3lm.tokenizers.base import NUCLEOTIDES, SPECIAL_TOKENS, Tokenizer

#: The same vocabulary size as ``nt6mer`` (4107), so the ablation compares equal embedding tables.
DEFAULT_VOCAB_SIZE = 4107
#: Longest merged token, in nucleotides: bounds tokens that are whole repeat copies.
DEFAULT_MAX_TOKEN_LENGTH = 16
_SINGLES = (*NUCLEOTIDES, "N")
_LETTERS = np.frombuffer("".join(_SINGLES).encode("ascii"), dtype=np.uint8)
_LEARNED = ("merges", "nucleotides_per_token", "layout_token_length")


def _hf_tokenizer(model: models.Model) -> HFTokenizer:
    """A HuggingFace tokenizer that never merges across N: every N is a piece of its own."""
    hf = HFTokenizer(model)
    hf.pre_tokenizer = pre_tokenizers.Split(Regex("N"), behavior="isolated")
    return hf


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"tokenizer 'bpe': {name} must be an integer >= {low}, got {value!r}")


@TOKENIZERS.register("bpe", examples=[{"vocab_size": 512}, {"vocab_size": 64, "add_cls": False}])
class BPETokenizer(Tokenizer):
    """Byte-pair encoding learned on the training split (greedy merges, HuggingFace BPE).

    Vocabulary: the six specials (ids 0..5), the singles ``A T C G N`` (6..10), then each merged
    token in the order its merge was learned, at most ``vocab_size`` in all (default 4107, as
    ``nt6mer``) and at most ``max_token_length`` nucleotides long (default 16; None: unbounded).
    Merges never cross an N, so every N is its own token and every sequence over ACGTN
    round-trips exactly.
    ``nucleotides_per_token`` is the *mean* token length of the training split's encodings (a
    float, not a fixed k); ``token_lengths`` gives every token's exact length, which keeps
    ``val/bpn`` comparable with the k-mer tokenisers.

    Generation: a static ``layout`` cannot let token lengths vary and still fix their sum, so it
    fixes the segmentation instead: ``n_bp // b`` positions that allow every N-free token of
    exactly ``b = layout_token_length`` nucleotides (default: the commonest token length of the
    training encodings), then ``n_bp % b`` positions of single A/C/G/T. Any legal ids decode to
    exactly ``n_bp``, for every sampler and for infill. Its bias, stated plainly: samples are
    drawn from the model *conditioned on that segmentation*. The model was trained on canonical
    (greedy-merge) segmentations with mixed lengths, so legal ids are usually not the canonical
    encoding of the sequence they spell (unlike the k-mer tokenisers they need not re-encode to
    themselves), and the body can only spell concatenations of the vocabulary's ``b``-mers, the
    frequent ones of the corpus, which pulls samples towards common k-mers.

    >>> tok = BPETokenizer.from_corpus(["ACGTACGTAC"] * 4, vocab_size=14, add_cls=False)
    >>> tok.vocab[11:]
    ['AC', 'GT', 'ACGT']
    >>> [tok.vocab[i] for i in tok.encode("ACGTACNGTA")]
    ['ACGT', 'AC', 'N', 'GT', 'A']
    """

    def __init__(
        self,
        merges: Sequence[Sequence[str]] | None = None,
        nucleotides_per_token: float | None = None,
        layout_token_length: int | None = None,
        vocab_size: int = DEFAULT_VOCAB_SIZE,
        max_token_length: int | None = DEFAULT_MAX_TOKEN_LENGTH,
        add_cls: bool = True,
    ) -> None:
        if merges is None or nucleotides_per_token is None or layout_token_length is None:
            raise ValueError(
                "tokenizer 'bpe' is not fitted (params lack merges, nucleotides_per_token or "
                "layout_token_length): it is learned from data; runner.train fits it on the "
                "training split, or call BPETokenizer.fit(sequences, params)"
            )
        bad = next((i for i, m in enumerate(merges) if len(m) != 2 or not all(m)), None)
        if bad is not None:
            raise ValueError(f"tokenizer 'bpe': merge {bad} is not a pair of tokens: {merges[bad]}")
        pairs = [(a, b) for a, b in merges]
        vocab = [*SPECIAL_TOKENS, *_SINGLES]
        vocab += list(dict.fromkeys(a + b for a, b in pairs if a + b not in vocab))
        if len(vocab) > vocab_size:
            raise ValueError(f"tokenizer 'bpe': {len(vocab)} tokens exceed vocab_size={vocab_size}")
        longest = max(map(len, vocab[len(SPECIAL_TOKENS) :]))
        if max_token_length is not None and longest > max_token_length:
            raise ValueError(
                f"tokenizer 'bpe': a {longest}-nt token exceeds max_token_length={max_token_length}"
            )
        super().__init__(vocab, nucleotides_per_token=nucleotides_per_token, add_cls=add_cls)
        index = {token: i for i, token in enumerate(vocab)}
        unknown = next((p for p in pairs if p[0] not in index or p[1] not in index), None)
        if unknown is not None:
            raise ValueError(f"tokenizer 'bpe': merge {list(unknown)} uses an unknown token")
        self.merges = pairs
        self._hf = _hf_tokenizer(models.BPE(vocab=index, merges=pairs))
        self._single_ids = np.arange(len(SPECIAL_TOKENS), len(SPECIAL_TOKENS) + len(_SINGLES))
        _check_int("layout_token_length", layout_token_length, 1)
        body = np.flatnonzero(self._token_lengths.numpy() == layout_token_length)
        self._body = body[["N" not in vocab[i] for i in body]]
        if not self._body.size:
            raise ValueError(
                f"tokenizer 'bpe': no N-free token of layout_token_length={layout_token_length}"
            )
        self.layout_token_length = layout_token_length

    # -- fitting ------------------------------------------------------------------------------

    @classmethod
    def fit(cls, sequences: Sequence[str], params: Mapping[str, Any]) -> dict[str, Any]:
        """Learn merges on ``sequences`` and return the params that rebuild this tokeniser.

        Deterministic (HuggingFace's trainer breaks count ties by token id; the order of the
        sequences does not matter). Seconds to tens of seconds for the DHS training split, so
        ``runner.train`` caches the result. Params that already hold ``merges`` are returned as
        they are, so a fitted tokenizer section can be reused; a given ``layout_token_length``
        is kept.
        """
        params = dict(params)
        if params.get("merges") is not None:
            return params
        allowed = {"vocab_size", "max_token_length", "add_cls", "layout_token_length"}
        unknown = sorted(set(params) - allowed - set(_LEARNED))
        if unknown:
            raise ValueError(
                f"tokenizer 'bpe': unknown params {unknown}; it accepts: {sorted(allowed)}"
            )
        vocab_size = params.get("vocab_size", DEFAULT_VOCAB_SIZE)
        max_token_length = params.get("max_token_length", DEFAULT_MAX_TOKEN_LENGTH)
        _check_int("vocab_size", vocab_size, len(SPECIAL_TOKENS) + len(_SINGLES))
        if max_token_length is not None:
            _check_int("max_token_length", max_token_length, 2)
        seqs = list(sequences)
        cls._batch_codes(seqs, [f"training row {i}" for i in range(len(seqs))])
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size - len(SPECIAL_TOKENS),
            initial_alphabet=list(_SINGLES),
            special_tokens=[],
            # HuggingFace's limit is exclusive (tokenizers 0.23): m + 1 keeps tokens of length m
            max_token_length=None if max_token_length is None else max_token_length + 1,
            show_progress=False,
        )
        hf = _hf_tokenizer(models.BPE())
        upper = [s.upper() for s in seqs]
        hf.train_from_iterator(upper, trainer=trainer)
        merges = [m.split(" ") if isinstance(m, str) else list(m) for m in _merges_of(hf)]
        if max_token_length is not None:  # the bound holds whatever the library's convention
            merges = [m for m in merges if len(m[0]) + len(m[1]) <= max_token_length]
        # the statistics come from the very tokeniser the params rebuild
        fitted = cls(
            merges,
            nucleotides_per_token=1.0,  # placeholders until measured below
            layout_token_length=1,
            vocab_size=vocab_size,
            max_token_length=max_token_length,
            add_cls=False,
        )
        ids = fitted.batch_encode(upper).flatten()
        lengths = fitted.token_lengths[ids[ids != fitted.pad_id]].numpy()
        if not lengths.size:
            raise ValueError("tokenizer 'bpe': cannot fit on a training split without nucleotides")
        layout_token_length = params.get("layout_token_length")
        if layout_token_length is None:
            layout_token_length = int(np.bincount(lengths).argmax())
        return {
            **params,
            "merges": merges,
            "nucleotides_per_token": round(float(lengths.mean()), 4),
            "layout_token_length": layout_token_length,
        }

    @classmethod
    def from_corpus(cls, sequences: Sequence[str], **params: Any) -> BPETokenizer:
        """Fit on ``sequences`` and build: ``cls(**cls.fit(sequences, params))``."""
        return cls(**cls.fit(sequences, params))

    # -- encoding -----------------------------------------------------------------------------

    def _tokenize(self, codes: np.ndarray) -> np.ndarray:
        text = _LETTERS[codes].tobytes().decode("ascii")
        return np.asarray(self._hf.encode(text).ids, dtype=np.int64)

    def batch_encode(
        self,
        seqs: Sequence[str],
        names: Sequence[str] | None = None,
        length: int | None = None,
    ) -> torch.Tensor:
        """:meth:`Tokenizer.batch_encode` with every row validated in one table lookup and
        merged in parallel by HuggingFace's Rust encoder."""
        names = self._row_names(seqs, names)
        codes, starts, lengths = self._batch_codes(seqs, names)
        text = _LETTERS[codes].tobytes().decode("ascii")
        rows = [text[s : s + n] for s, n in zip(starts.tolist(), lengths.tolist(), strict=True)]
        encoded = [e.ids for e in self._hf.encode_batch_fast(rows)]
        first = int(self.add_cls)
        counts = [first + len(ids) for ids in encoded]
        out = np.full((len(seqs), self._width(counts, names, length)), self.pad_id, np.int64)
        out[:, :first] = self.cls_id
        for i, ids in enumerate(encoded):
            out[i, first : first + len(ids)] = ids
        return torch.from_numpy(out)

    # -- generation ---------------------------------------------------------------------------

    def layout(self, n_bp: int) -> torch.Tensor:
        """Legal tokens per position for exactly ``n_bp`` of ACGT (see the class docstring).

        ``n_bp // b`` positions allow every N-free token of ``b = layout_token_length``
        nucleotides, then ``n_bp % b`` positions allow single A, C, G, T; ``<cls>`` first when
        ``add_cls``. Unlike the k-mer tokenisers L is not ``len(encode("A" * n_bp))`` and legal
        ids need not be the canonical encoding of what they spell; their length is exact.
        """
        if n_bp < 0:
            raise ValueError(f"n_bp must be >= 0, got {n_bp}")
        n_body, n_tail = divmod(n_bp, self.layout_token_length)
        first = int(self.add_cls)
        legal = np.zeros((first + n_body + n_tail, self.vocab_size), dtype=bool)
        legal[:first, self.cls_id] = True
        legal[first : first + n_body, self._body] = True
        legal[first + n_body :, self._single_ids[: len(NUCLEOTIDES)]] = True
        return torch.from_numpy(legal)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(vocab_size={self.vocab_size}, "
            f"layout_token_length={self.layout_token_length}, add_cls={self.add_cls})"
        )


def _merges_of(hf: HFTokenizer) -> list[Any]:
    """The learned merges in rank order (the Python API exposes them only through JSON)."""
    return json.loads(hf.to_str())["model"]["merges"]
