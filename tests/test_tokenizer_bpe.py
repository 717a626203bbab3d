"""The ``bpe`` tokeniser: fitting, exact round trips, errors, checkpoints, exact-length sampling."""

from __future__ import annotations

import doctest
import random
import re

import lightning as L
import numpy as np
import pytest
import torch
from conftest import markov_sequences

from d3lm.cli import main
from d3lm.config import load_config
from d3lm.data.fasta import read_fasta
from d3lm.lit.diffusion_lm import DiffusionLM
from d3lm.registry import SAMPLERS, TOKENIZERS
from d3lm.rundir import RunDir
from d3lm.sampling import NetworkDenoiser
from d3lm.stages.checkpoints import load_model
from d3lm.stages.sample import sample
from d3lm.stages.train import data_table, fitted_tokenizer, train
from d3lm.tokenizers import BPETokenizer, Tokenizer, bpe

MICRO = {
    "model": {"preset": "micro", "params": {}},
    "diffusion": {
        "schedule": {"name": "linear", "params": {}},
        "objective": {"name": "masked_diffusion", "params": {}},
    },
    "optim": {
        "lr": 1e-3,
        "betas": [0.9, 0.95],
        "weight_decay": 0.0,
        "warmup_steps": 1,
        "min_lr_ratio": 0.1,
    },
    "max_steps": 1,
}


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    """Real-shaped training data: a CpG-depleted chain with a planted TATAAAAG in every row."""
    return markov_sequences(300, 200, seed=3)


@pytest.fixture(scope="module")
def params(corpus: list[str]) -> dict:
    return BPETokenizer.fit(corpus, {"vocab_size": 512})


@pytest.fixture(scope="module")
def tok(params: dict) -> BPETokenizer:
    return TOKENIZERS.build("bpe", params)


def _test_sequences(corpus: list[str]) -> list[str]:
    """For every length 1..300: uniform DNA, a slice of real-shaped DNA, and DNA with N and
    lower case."""
    rng = random.Random(0)
    text = "".join(corpus)
    out = []
    for n in range(1, 301):
        out.append("".join(rng.choice("ACGT") for _ in range(n)))
        start = rng.randrange(len(text) - n)
        out.append(text[start : start + n])
        out.append("".join(rng.choice("ACGTNacgtn") for _ in range(n)))
    return out


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(bpe)
    assert result.attempted >= 3 and result.failed == 0


def test_vocabulary_and_specials(tok: BPETokenizer, params: dict) -> None:
    assert tok.vocab_size == 512 == len(set(tok.vocab))
    assert tok.vocab[:11] == ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>", *"ATCGN"]
    assert (tok.unk_id, tok.pad_id, tok.mask_id, tok.cls_id, tok.eos_id, tok.bos_id) == tuple(
        range(6)
    )
    assert tok.token_lengths.tolist() == [0] * 6 + [len(t) for t in tok.vocab[6:]]
    assert max(len(t) for t in tok.vocab) <= bpe.DEFAULT_MAX_TOKEN_LENGTH
    assert all("N" not in t for t in tok.vocab[11:])  # merges never cross an N
    assert isinstance(tok.nucleotides_per_token, float)
    assert tok.nucleotides_per_token == params["nucleotides_per_token"] > 2


def test_round_trip_every_length(tok: BPETokenizer, corpus: list[str]) -> None:
    seqs = _test_sequences(corpus)
    lengths = tok.token_lengths
    for seq in seqs:
        ids = tok.encode(seq)
        assert ids[0] == tok.cls_id and tok.unk_id not in ids
        assert tok.decode(ids) == seq.upper()
        assert int(lengths[ids].sum()) == len(seq)  # the val/bpn denominator is right
        assert sum(tok.vocab[i] == "N" for i in ids) == seq.upper().count("N")
    batch = tok.batch_encode(seqs)
    assert torch.equal(batch, Tokenizer.batch_encode(tok, seqs))  # the fast path = the contract
    assert int(lengths[batch].sum()) == sum(map(len, seqs))  # pads count zero nucleotides
    assert tok.encode("") == [tok.cls_id] and tok.batch_encode([]).shape == (0, 0)


def test_mean_token_length_is_measured_on_the_training_split(
    tok: BPETokenizer, corpus: list[str]
) -> None:
    ids = tok.batch_encode(corpus)
    content = ids[ids > 5]
    mean = tok.token_lengths[content].double().mean().item()
    assert tok.nucleotides_per_token == pytest.approx(mean, abs=1e-4)
    assert tok.layout_token_length == int(torch.bincount(tok.token_lengths[content]).argmax())


def test_fitting_is_deterministic(corpus: list[str], params: dict) -> None:
    shuffled = random.Random(1).sample(corpus, len(corpus))
    assert BPETokenizer.fit(shuffled, {"vocab_size": 512}) == params
    assert BPETokenizer.fit(corpus, {"vocab_size": 512}) == params
    # golden: the commonest pairs first (the chain's self-transitions), ties by token id
    pairs = [["A", "A"], ["T", "T"], ["C", "C"], ["G", "G"], ["C", "A"], ["C", "T"]]
    assert params["merges"][:6] == pairs
    assert (params["nucleotides_per_token"], params["layout_token_length"]) == (4.0783, 4)


def test_frequent_repeats_become_single_tokens() -> None:
    rng = random.Random(2)

    def noise(n: int) -> str:
        return "".join(rng.choice("ACGT") for _ in range(n))

    # a motif between Ns (merges never cross N) in every row: one token
    motif = BPETokenizer.from_corpus(
        [f"{noise(40)}N{'TATAAAAG'}N{noise(40)}" for _ in range(100)], vocab_size=64
    )
    assert [motif.vocab[i] for i in motif.encode("TATAAAAG")] == ["<cls>", "TATAAAAG"]
    assert motif.encode("GGNTATAAAAG")[-1] == motif.vocab.index("TATAAAAG")
    # a tandem repeat in every row: copies merge up to max_token_length
    repeat = BPETokenizer.from_corpus(
        [noise(40) + "N" + "CA" * 12 for _ in range(60)], vocab_size=40, max_token_length=8
    )
    assert [repeat.vocab[i] for i in repeat.encode("CA" * 12)] == ["<cls>", *["CACACACA"] * 3]
    assert max(len(t) for t in repeat.vocab) == 8


@pytest.mark.parametrize(
    ("seq", "name", "label", "char", "position"),
    [
        ("ACGTAAR", "chr1:5-10", "record 'chr1:5-10'", "'R'", 7),
        ("acgy", None, "sequence", "'y'", 4),
    ],
)
def test_invalid_characters_name_record_and_position(
    tok: BPETokenizer, seq: str, name: str | None, label: str, char: str, position: int
) -> None:
    detail = re.escape(f"invalid nucleotide {char} at position {position} (allowed: A, C, G, T, N)")
    with pytest.raises(ValueError, match=f"^{re.escape(label)}: {detail}$"):
        tok.encode(seq, name)
    with pytest.raises(ValueError, match=f"^record 'row 1': {detail}$"):
        tok.batch_encode(["ACGT", seq])
    with pytest.raises(ValueError, match=f"^record 'training row 1': {detail}$"):
        BPETokenizer.fit(["ACGT", seq], {})


def test_user_errors(tok: BPETokenizer, params: dict) -> None:
    with pytest.raises(ValueError, match=r"'bpe' is not fitted.*training split"):
        TOKENIZERS.build("bpe", {"vocab_size": 512})
    with pytest.raises(ValueError, match=r"unknown params \['k'\]"):
        BPETokenizer.fit(["ACGT"], {"k": 3})
    with pytest.raises(ValueError, match="vocab_size must be an integer >= 11"):
        BPETokenizer.fit(["ACGT"], {"vocab_size": 10})
    with pytest.raises(ValueError, match="max_token_length must be an integer >= 2"):
        BPETokenizer.fit(["ACGT"], {"max_token_length": 1})
    with pytest.raises(ValueError, match="without nucleotides"):
        BPETokenizer.fit([""], {})
    with pytest.raises(ValueError, match="no N-free token of layout_token_length=17"):
        BPETokenizer(**{**params, "layout_token_length": 17})
    with pytest.raises(ValueError, match="token exceeds max_token_length=3"):
        BPETokenizer(**{**params, "max_token_length": 3})
    with pytest.raises(ValueError, match="exceed vocab_size=100"):
        BPETokenizer(**{**params, "vocab_size": 100})
    with pytest.raises(ValueError, match=r"merge \['GG', 'XY'\] uses an unknown token"):
        BPETokenizer(**{**params, "merges": [*params["merges"], ["GG", "XY"]], "vocab_size": 513})
    with pytest.raises(ValueError, match=r"cannot decode id 2 \(<mask>\) at token position 1"):
        tok.decode([tok.cls_id, tok.mask_id])
    assert BPETokenizer.fit(["ACGT"], params) == params  # fitted params are kept as they are


def test_layout_any_legal_ids_decode_to_exact_length(tok: BPETokenizer) -> None:
    rng = np.random.default_rng(3)
    b = tok.layout_token_length
    lengths = tok.token_lengths.numpy()
    for n_bp in range(0, 301):
        legal = tok.layout(n_bp).numpy()
        assert legal.shape == (1 + n_bp // b + n_bp % b, tok.vocab_size)
        assert np.flatnonzero(legal[0]).tolist() == [tok.cls_id]
        assert not legal[1:, tok.special_ids].any()
        ids = (rng.random(legal.shape) * legal).argmax(axis=1)
        seq = tok.decode(ids)
        assert len(seq) == n_bp == int(lengths[ids].sum()) and set(seq) <= set("ACGT")
    with pytest.raises(ValueError, match="n_bp"):
        tok.layout(-1)


def _micro(spec: dict) -> DiffusionLM:
    torch.manual_seed(0)
    return DiffusionLM(tokenizer={"name": "bpe", "params": spec}, **MICRO).eval()


def test_checkpoint_alone_rebuilds_the_tokenizer(tmp_path, params: dict, corpus) -> None:
    model = _micro(params)
    path = tmp_path / "m.ckpt"
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "pytorch-lightning_version": L.__version__,
        },
        path,
    )
    loaded = DiffusionLM.load_from_checkpoint(path, map_location="cpu")
    assert loaded.tokenizer.vocab == model.tokenizer.vocab
    assert torch.equal(loaded.tokenizer.batch_encode(corpus), model.tokenizer.batch_encode(corpus))
    assert torch.equal(loaded.tokenizer.layout(97), model.tokenizer.layout(97))


def test_micro_model_samples_exact_lengths(params: dict, one_thread) -> None:
    model = _micro(params)
    tok = model.tokenizer
    den = NetworkDenoiser(model.encoder, model.head, tok.mask_id, tok.vocab_size)
    for n_bp in (1, 4, 5, 13, 60, 200):
        for preset in ("random", "confidence"):
            out = SAMPLERS.build(preset, {"steps": 4}).sample(den, 3, tok.layout(n_bp), seed=n_bp)
            seqs = [tok.decode(row) for row in out]
            assert all(len(s) == n_bp and set(s) <= set("ACGT") for s in seqs), (n_bp, seqs)


def test_padded_batch_counts_only_nucleotides(params: dict, corpus: list[str]) -> None:
    model = _micro(params)
    rows = [corpus[0][:200], corpus[1][:37], corpus[2][:120] + "N" + corpus[2][:9]]
    ids = model.tokenizer.batch_encode(rows)
    assert (ids == model.tokenizer.pad_id).sum() > 0  # rows of different token counts
    assert model.special[model.tokenizer.pad_id]  # pads are never masked nor predicted
    loss, bpn, nucleotides = model._loss(ids, torch.Generator().manual_seed(0))
    assert int(nucleotides) == sum(map(len, rows)) and torch.isfinite(loss) and bpn > 0


def test_runner_fits_trains_caches_resumes_and_samples_exact_lengths(dna_table, tmp_path):
    cfg = load_config(
        "micro",
        overrides=[
            f"data.dataset={dna_table}",
            f"runs_dir={tmp_path}",
            f"cache_dir={tmp_path / 'cache'}",
            "run=r0",
            "experiment=bpe",
            "tokenizer.name=bpe",
            "tokenizer.params.vocab_size=300",
            "trainer.max_steps=4",
            "trainer.val_check_interval=2",
            "trainer.checkpoint_every_n_steps=2",
        ],
    )
    run_dir = train(cfg)
    model = load_model(run_dir)
    table = data_table(cfg)
    train_seqs = table.loc[table["split"] == "train", "sequence"].tolist()
    expected = BPETokenizer.fit(train_seqs, {"vocab_size": 300})
    assert model.hparams.tokenizer["params"] == expected  # the merges travel with the checkpoint
    assert len(list((tmp_path / "cache" / "tokenizers").glob("bpe-*.json"))) == 1
    assert fitted_tokenizer(cfg, table, None)["params"] == expected  # from the cache
    assert not RunDir(run_dir).log()["val/bpn"].dropna().empty
    # a resume rebuilds the tokenizer from the checkpoint, never refits
    assert main(["train", f"resume={run_dir}", "trainer.max_steps=6"]) == 0
    assert load_model(run_dir).hparams.tokenizer["params"] == expected
    for n_bp in (31, 60):
        cfg.sample.bp = n_bp
        out = sample(cfg, run_dir, out=tmp_path / f"s{n_bp}.fa")
        assert [len(s) for _, s in read_fasta(out)] == [n_bp] * cfg.sample.n
