"""Tokenisers: NT v2 golden ids, exact round trips at every length, errors, batching, layouts.

The contract tests run on every registered tokenizer with every example it declares
(:mod:`registered`); the k-mer tests on those that are k-mer tokenizers."""

from __future__ import annotations

import doctest
import random
import re

import numpy as np
import pytest
import torch
from registered import build_tokenizer, examples

from d3lm.registry import TOKENIZERS, UnknownPluginError
from d3lm.tokenizers import KmerTokenizer, NT6merTokenizer, Tokenizer, kmer

CASES = examples("tokenizer")
KMER_CASES = [c for c in CASES if issubclass(TOKENIZERS.get(c.values[0][0]), KmerTokenizer)]


def _random_dna(rng: random.Random, n: int, alphabet: str = "ACGT") -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


@pytest.fixture(scope="module", params=CASES)
def tok(request: pytest.FixtureRequest) -> Tokenizer:
    return build_tokenizer(*request.param)


@pytest.fixture(scope="module", params=KMER_CASES)
def kmer_tok(request: pytest.FixtureRequest) -> Tokenizer:
    return build_tokenizer(*request.param)


def test_nt6mer_vocabulary_matches_nt_v2(tmp_path) -> None:
    nt = NT6merTokenizer()
    assert nt.vocab_size == len(nt.vocab) == 4107
    assert nt.vocab[:6] == ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"]
    assert (nt.unk_id, nt.pad_id, nt.mask_id, nt.cls_id, nt.eos_id, nt.bos_id) == (0, 1, 2, 3, 4, 5)
    assert nt.special_ids == [0, 1, 2, 3, 4, 5]
    assert nt.vocab[6] == "AAAAAA"
    assert nt.vocab[438] == "ATCGAA"
    assert nt.vocab[4101] == "GGGGGG"
    assert nt.vocab[4102:] == ["A", "T", "C", "G", "N"]
    assert nt.nucleotides_per_token == 6
    lines = nt.save_vocab(tmp_path / "vocab.txt").read_text().splitlines()
    assert lines == nt.vocab


def test_nt6mer_golden_vector() -> None:
    assert NT6merTokenizer().encode("ATCGAATNGG") == [3, 438, 4103, 4106, 4105, 4105]
    assert NT6merTokenizer(add_cls=False).encode("ATCGAATNGG") == [438, 4103, 4106, 4105, 4105]
    assert NT6merTokenizer().decode([3, 438, 4103, 4106, 4105, 4105]) == "ATCGAATNGG"


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(kmer)
    assert result.attempted >= 4
    assert result.failed == 0


@pytest.mark.parametrize("k", range(1, 7))
def test_kmer_vocabulary(k: int) -> None:
    t = KmerTokenizer(k)
    singles = 1 if k == 1 else 5
    assert t.vocab_size == 6 + 4**k + singles
    assert len(set(t.vocab)) == t.vocab_size
    assert t.vocab[6] == "A" * k
    assert t.vocab[-1] == "N"
    assert t.nucleotides_per_token == k


@pytest.mark.parametrize("k", [0, 7, -1, 2.0, True])
def test_kmer_rejects_bad_k(k: object) -> None:
    with pytest.raises(ValueError, match="k must be"):
        KmerTokenizer(k)  # type: ignore[arg-type]


def test_exact_round_trip_every_length(tok: Tokenizer) -> None:
    """Lengths that are not multiples of k must not turn into <unk> or padding k-mers."""
    rng = random.Random(0)
    for n in range(1, 51):
        for _ in range(3):
            seq = _random_dna(rng, n)
            ids = tok.encode(seq)
            assert tok.unk_id not in ids
            assert tok.decode(ids) == seq
            assert int(tok.token_lengths[ids].sum()) == n


def test_kmer_tail_is_single_nucleotides(kmer_tok: Tokenizer) -> None:
    """n bp are n // k whole k-mers and n % k single nucleotides."""
    tok, rng = kmer_tok, random.Random(0)
    for n in range(1, 51):
        ids = tok.encode(_random_dna(rng, n))
        k = tok.nucleotides_per_token
        assert len(ids) == int(tok.add_cls) + n // k + n % k


def test_round_trip_with_n(tok: Tokenizer) -> None:
    rng = random.Random(1)
    for n in range(1, 60):
        seq = _random_dna(rng, n, "ACGTN")
        ids = tok.encode(seq)
        assert tok.decode(torch.tensor(ids)) == seq
        assert int(tok.token_lengths[ids].sum()) == n
        # every N is its own token
        assert sum(tok.vocab[i] == "N" for i in ids) == seq.count("N")


def test_n_splits_runs() -> None:
    t = KmerTokenizer(3, add_cls=False)
    tokens = [t.vocab[i] for i in t.encode("ACGTANNACGTAC")]
    assert tokens == ["ACG", "T", "A", "N", "N", "ACG", "TAC"]
    assert [t.vocab[i] for i in t.encode("NNN")] == ["N", "N", "N"]


def test_lowercase_is_uppercased(tok: Tokenizer) -> None:
    assert tok.encode("acgtnACgtaCCGT") == tok.encode("ACGTNACGTACCGT")


def test_empty_sequence(tok: Tokenizer) -> None:
    assert tok.encode("") == ([tok.cls_id] if tok.add_cls else [])
    assert tok.decode(tok.encode("")) == ""


@pytest.mark.parametrize(
    ("seq", "name", "label", "char", "position"),
    [
        ("ACGTAAR", "chr1:5-10", "record 'chr1:5-10'", "'R'", 7),
        ("acgy", None, "sequence", "'y'", 4),
        ("AC-G", "x", "record 'x'", "'-'", 3),
        ("ACGé", "x", "record 'x'", "'é'", 4),
        (" ACG", "x", "record 'x'", "' '", 1),
    ],
)
def test_invalid_characters_name_record_and_position(
    tok: Tokenizer, seq: str, name: str | None, label: str, char: str, position: int
) -> None:
    detail = re.escape(f"invalid nucleotide {char} at position {position} (allowed: A, C, G, T, N)")
    with pytest.raises(ValueError, match=f"^{re.escape(label)}: {detail}$"):
        tok.encode(seq, name)
    batch_label = re.escape("record 'row 1'" if name is None else label)
    names = None if name is None else ["ok", name]
    with pytest.raises(ValueError, match=f"^{batch_label}: {detail}$"):
        tok.batch_encode(["ACGT", seq], names=names)


def test_batch_error_without_names_names_row() -> None:
    with pytest.raises(ValueError, match=r"record 'row 2': invalid nucleotide 'R' at position 2"):
        NT6merTokenizer().batch_encode(["AAA", "", "AR"])


def test_decode_skips_framing_and_rejects_mask_unk(tok: Tokenizer) -> None:
    body = tok.encode("ACGTAC")[int(tok.add_cls) :]
    framed = [tok.bos_id, tok.cls_id, *body, tok.eos_id, tok.pad_id, tok.pad_id]
    assert tok.decode(framed) == "ACGTAC"
    for bad in (tok.mask_id, tok.unk_id):
        with pytest.raises(ValueError, match="at token position 2"):
            tok.decode([*body[:1], tok.pad_id, bad])
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([tok.vocab_size])
    with pytest.raises(ValueError, match="one sequence"):
        tok.decode(torch.zeros(2, 3, dtype=torch.long))


def test_batch_encode_equals_encode(tok: Tokenizer) -> None:
    rng = random.Random(2)
    seqs = [
        _random_dna(rng, rng.randint(0, 40), rng.choice(["ACGT", "ACGTN", "acgtn"]))
        for _ in range(60)
    ]
    seqs += [_random_dna(rng, 24) for _ in range(5)]  # a group of equal lengths
    batch = tok.batch_encode(seqs)
    assert batch.dtype == torch.long
    assert batch.shape[1] == max(len(tok.encode(s)) for s in seqs)
    for row, seq in zip(batch, seqs, strict=True):
        ids = tok.encode(seq)
        assert row[: len(ids)].tolist() == ids
        assert (row[len(ids) :] == tok.pad_id).all()
    # the vectorised override agrees with the generic row-by-row contract implementation
    assert torch.equal(Tokenizer.batch_encode(tok, seqs), batch)
    assert torch.equal(
        Tokenizer.batch_encode(tok, seqs, length=50), tok.batch_encode(seqs, length=50)
    )


def test_batch_encode_fixed_length(tok: Tokenizer) -> None:
    seqs = ["ACGTACGTAC", "AC"]
    batch = tok.batch_encode(seqs, length=20)
    assert batch.shape == (2, 20)
    assert tok.decode(batch[0]) == "ACGTACGTAC"
    with pytest.raises(ValueError, match=r"record 'long': \d+ tokens do not fit length=2"):
        tok.batch_encode(seqs, names=["long", "short"], length=2)
    with pytest.raises(ValueError, match="2 names for 1 sequences"):
        tok.batch_encode(["A"], names=["a", "b"])
    assert tok.batch_encode([]).shape == (0, 0)


def test_layout_any_legal_ids_decode_to_exact_length(tok: Tokenizer) -> None:
    rng = np.random.default_rng(3)
    first = int(tok.add_cls)
    lengths = tok.token_lengths.numpy()
    for n_bp in range(1, 301):
        layout = tok.layout(n_bp)
        assert layout.dtype == torch.bool
        legal = layout.numpy()  # numpy keeps this loop fast on a busy CPU
        assert legal.shape[1] == tok.vocab_size
        assert not legal[first:, tok.special_ids].any()
        if tok.add_cls:
            assert np.flatnonzero(legal[0]).tolist() == [tok.cls_id]
        # one random legal token per position
        ids = (rng.random(legal.shape) * legal).argmax(axis=1).tolist()
        seq = tok.decode(ids)
        assert len(seq) == n_bp
        assert set(seq) <= set("ACGT")
        assert int(lengths[ids].sum()) == n_bp


def test_kmer_layout_is_the_encoding_of_any_legal_sequence(kmer_tok: Tokenizer) -> None:
    """k-mer layouts fix the canonical segmentation: 4^k choices per k-mer, 4 per tail base, and
    legal ids are the encoding of the sequence they spell."""
    tok, rng = kmer_tok, np.random.default_rng(3)
    k, first = tok.nucleotides_per_token, int(tok.add_cls)
    for n_bp in range(1, 301):
        legal = tok.layout(n_bp).numpy()
        assert legal.shape == (len(tok.encode("A" * n_bp)), tok.vocab_size)
        assert legal.sum(axis=1)[first:].tolist() == [4**k] * (n_bp // k) + [4] * (n_bp % k)
        ids = (rng.random(legal.shape) * legal).argmax(axis=1).tolist()
        assert tok.encode(tok.decode(ids)) == ids


def test_layout_zero_and_negative(tok: Tokenizer) -> None:
    assert tok.layout(0).shape == (int(tok.add_cls), tok.vocab_size)
    with pytest.raises(ValueError, match="n_bp"):
        tok.layout(-1)


def test_token_lengths(tok: Tokenizer) -> None:
    lengths = tok.token_lengths
    assert lengths.dtype == torch.long
    assert lengths.shape == (tok.vocab_size,)
    assert lengths[tok.special_ids].eq(0).all()
    assert lengths.tolist() == [
        0 if i in tok.special_ids else len(t) for i, t in enumerate(tok.vocab)
    ]
    lengths[0] = 99  # a copy: callers cannot corrupt the tokenizer
    assert tok.token_lengths[0] == 0


def test_registry_builds_by_name() -> None:
    nt = TOKENIZERS.build("nt6mer", {})
    assert isinstance(nt, NT6merTokenizer)
    assert nt.encode("ATCGAA") == [3, 438]
    three = TOKENIZERS.build("kmer", {"k": 3, "add_cls": False})
    assert isinstance(three, KmerTokenizer)
    assert three.nucleotides_per_token == 3
    assert not three.add_cls
    with pytest.raises(UnknownPluginError, match=r"known tokenizer plugins: .*kmer, .*nt6mer"):
        TOKENIZERS.build("sixmer", {})
    with pytest.raises(TypeError, match="it accepts: add_cls"):
        TOKENIZERS.build("nt6mer", {"k": 5})
