"""Conditional training (``conditioning.name=label``): the plugin's ids, encoding and label
dropout; the backbone's condition table, absent (bit for bit as before) with no condition
tokens; a micro run trained through the real train stage on a labelled table, whose checkpoint
rebuilds its classes, whose logits follow the condition token and which resumes exactly; labels
that cannot be encoded are errors naming the file and record; NT v2 export and import."""

from __future__ import annotations

import dataclasses
import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch
from conftest import markov_sequences, micro_config
from interrupt_helpers import assert_same_weights
from omegaconf import OmegaConf

from d3lm import interrupt
from d3lm.cli import main
from d3lm.conditioning import LabelConditioning, NoConditioning
from d3lm.config import FINETUNE_YAML, ConfigError, load_config
from d3lm.data.datamodule import SequenceDataModule
from d3lm.errors import D3lmError, PluginParamError
from d3lm.interop.conditions import CONDITION_TABLE
from d3lm.interop.nt_v2 import export_nt, import_nt, write_run
from d3lm.interrupt import Interrupted
from d3lm.lit.diffusion_lm import DiffusionLM, drop_seed, noise_seed
from d3lm.model.backbone import PRESETS, NTv2Encoder
from d3lm.registry import CONDITIONINGS, PLUGIN_KEYS
from d3lm.rundir import RunDir
from d3lm.stages.checkpoints import load_model
from d3lm.stages.classifier import read_init
from d3lm.stages.train import build_model, train
from d3lm.tokenizers import NT6merTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = NT6merTokenizer().vocab_size
LABEL = ["conditioning.name=label"]


def label(classes: tuple[str, ...] = ("a", "b"), p_uncond: float = 0.1) -> LabelConditioning:
    return LabelConditioning(classes=classes, p_uncond=p_uncond, first_id=VOCAB)


def cls_ids(rows: int = 3, length: int = 12, seed: int = 0) -> torch.Tensor:
    """Random 6-mer ids behind ``<cls>``."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(6, 4102, (rows, length), generator=g)
    ids[:, 0] = NT6merTokenizer().cls_id
    return ids


# ---------------------------------------------------------------------------- the plugin


def test_condition_ids_follow_the_vocabulary_and_encode_into_the_cls_slot() -> None:
    plugin = label(("GM12878", "K562"))
    assert (plugin.n_tokens, plugin.null_id, plugin.class_id("K562")) == (3, VOCAB + 2, VOCAB + 1)
    ids = cls_ids()
    out = plugin.encode(ids, ["K562", None, "GM12878"], ["r0", "r1", "r2"])
    assert out[:, 0].tolist() == [VOCAB + 1, VOCAB + 2, VOCAB]
    assert torch.equal(out[:, 1:], ids[:, 1:]) and ids[0, 0] == NT6merTokenizer().cls_id
    assert torch.equal(plugin.strip(out, 3), ids)
    assert (plugin.unconditional(out)[:, 0] == plugin.null_id).all()
    assert (NoConditioning.n_tokens, NoConditioning.classes) == (0, ())


def test_label_dropout_has_the_rate_p_uncond_and_is_a_function_of_the_generator() -> None:
    plugin = label(p_uncond=0.25)
    ids = plugin.encode(cls_ids(4000), ["a"] * 4000, [""] * 4000)
    first = plugin.drop(ids, torch.Generator().manual_seed(7))
    again = plugin.drop(ids, torch.Generator().manual_seed(7))
    assert torch.equal(first, again)
    dropped = (first[:, 0] == plugin.null_id).float().mean().item()
    assert dropped == pytest.approx(0.25, abs=0.03)
    assert torch.equal(first[:, 1:], ids[:, 1:])
    assert set(first[:, 0].tolist()) == {plugin.class_id("a"), plugin.null_id}


def test_the_layout_allows_condition_tokens_in_the_cls_slot_only() -> None:
    layout = NT6merTokenizer().layout(60)
    wide = label().layout(layout)
    assert wide.shape == (layout.shape[0], VOCAB + 3)
    assert wide[0].nonzero().flatten().tolist() == [VOCAB, VOCAB + 1, VOCAB + 2]
    assert torch.equal(wide[1:, :VOCAB], layout[1:]) and not wide[1:, VOCAB:].any()


def test_classes_are_fitted_from_the_training_split_sorted() -> None:
    table = pd.DataFrame(
        {"name": ["x", "y", "z"], "label": ["k", "g", "v"], "split": ["train", "train", "valid"]}
    )
    assert LabelConditioning.fit(table, {"p_uncond": 0.2}, "f")["classes"] == ["g", "k"]
    assert LabelConditioning.fit(table, {"classes": ["v"]}, "f")["classes"] == ["v"]


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (None, r"t\.parquet: conditioning 'label' needs a 'label' column"),
        (["a", " "], "'y'"),
        (["a", "Hep G2"], r"t\.parquet: record 'y': label 'Hep G2' holds whitespace"),
    ],
)
def test_fitting_refuses_a_table_without_labels_naming_it(labels, match) -> None:
    table = pd.DataFrame({"name": ["x", "y"], "split": ["train", "train"]})
    if labels is not None:
        table["label"] = labels
    with pytest.raises(D3lmError, match=match):
        LabelConditioning.fit(table, {}, "t.parquet")


def test_class_names_given_by_hand_are_one_word_each() -> None:
    with pytest.raises(ValueError, match="without whitespace: 'Hep G2'"):
        LabelConditioning(["K562", "Hep G2"])


def test_conditioning_is_a_config_section_a_grid_axis_and_a_checked_plugin() -> None:
    cfg = load_config("micro", overrides=[*LABEL, "conditioning.params.p_uncond=0.2"])
    assert cfg.conditioning.params.p_uncond == 0.2
    with pytest.raises(ConfigError, match="Key 'guidance' is not in struct"):
        load_config("micro", overrides=["conditioning.guidance=1"])
    assert PLUGIN_KEYS["conditioning.name"] is CONDITIONINGS
    assert CONDITIONINGS.expand(["*"]) == ["label", "none"]
    with pytest.raises(PluginParamError, match="p_uncond"):
        CONDITIONINGS.check("label", {"p_uncond": 1.5})


# ---------------------------------------------------------------------------- the backbone


def test_no_condition_tokens_leave_the_backbone_as_it_was() -> None:
    """The same parameters, drawn in the same order, and the same outputs; a conditioned copy
    with those weights gives bit-identical outputs wherever no condition token is read."""
    cfg = PRESETS["micro"]
    torch.manual_seed(0)
    plain = NTv2Encoder(cfg)
    torch.manual_seed(0)
    explicit = NTv2Encoder(dataclasses.replace(cfg, condition_tokens=0))
    assert plain.embeddings.condition_embeddings is None
    a, b = plain.state_dict(), explicit.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    conditioned = NTv2Encoder(dataclasses.replace(cfg, condition_tokens=3))
    result = conditioned.load_state_dict(a, strict=False)
    assert result.missing_keys == ["embeddings.condition_embeddings.weight"]
    assert not result.unexpected_keys
    ids = cls_ids()
    with torch.no_grad():
        assert torch.equal(plain(ids), conditioned(ids))
        assert torch.equal(plain.embeddings(ids), plain.embeddings.word_embeddings(ids))


@pytest.mark.parametrize("nucleotides", [False, True])
def test_condition_ids_read_their_own_table_in_forward_and_forward_kv(nucleotides: bool) -> None:
    tok = NT6merTokenizer()
    cfg = dataclasses.replace(
        PRESETS["micro"], condition_tokens=3, nucleotide_embeddings=nucleotides
    )
    torch.manual_seed(0)
    encoder = NTv2Encoder(cfg, tok.nucleotide_codes()).eval()
    ids = label().encode(cls_ids(), ["a", "b", None], ["", "", ""])
    table = encoder.embeddings.condition_embeddings.weight
    with torch.no_grad():
        x = encoder.embeddings(ids)
        assert torch.equal(x[:, 0], table[ids[:, 0] - VOCAB])
        assert torch.equal(x[:, 1:], encoder.embeddings(ids[:, 1:]))
        at = torch.ones_like(ids, dtype=torch.bool)
        full = encoder(ids)
        cached, _ = encoder.forward_kv(ids, at, None, ~at)
        torch.testing.assert_close(cached, full.flatten(0, 1), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------- the LightningModule


def test_a_conditional_model_needs_a_tokenizer_with_a_cls_slot() -> None:
    cfg = load_config(
        "micro", overrides=[*LABEL, "tokenizer.name=kmer", "tokenizer.params.add_cls=false"]
    )
    with pytest.raises(D3lmError, match=r"<cls> slot.*add_cls false"):
        build_model(cfg)


def test_an_unconditional_model_draws_no_label_dropout() -> None:
    model = build_model(load_config("micro"))
    assert model.conditioning.n_tokens == 0 and not hasattr(model.conditioning, "drop")
    assert model.special.shape == (VOCAB,) and model.token_lengths.shape == (VOCAB,)
    assert drop_seed(0, 0, 5) != noise_seed(0, 0, 5)


# ---------------------------------------------------------------------------- a trained micro run


@pytest.fixture(scope="module")
def trained(dna_table: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A conditional micro run of 4 steps on the fixture's labels (``a``, ``b``)."""
    root = tmp_path_factory.mktemp("cond")
    steps = ["trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.precision=32-true"]
    return train(micro_config(dna_table, root, *LABEL, "run=r", *steps))


def test_the_checkpoint_rebuilds_the_fitted_classes(trained: Path) -> None:
    model = load_model(trained)
    assert model.conditioning.classes == ("a", "b")
    assert model.hparams.conditioning["params"]["classes"] == ["a", "b"]
    assert model.backbone_config.condition_tokens == 3
    assert "encoder.embeddings.condition_embeddings.weight" in model.state_dict()
    again = DiffusionLM.load_from_checkpoint(trained / "checkpoints" / "last.ckpt")
    assert again.conditioning.classes == ("a", "b")
    saved = load_config(files=[trained / "config.yaml"])
    assert saved.conditioning.name == "label"


def test_condition_ids_are_special_and_spell_no_nucleotide(trained: Path) -> None:
    model = load_model(trained)
    assert model.special.shape == (VOCAB + 3,) and model.special[VOCAB:].all()
    assert model.token_lengths.shape == (VOCAB + 3,) and not model.token_lengths[VOCAB:].any()
    assert not model.special[: VOCAB - 5].all()  # the 6-mers stay real tokens


def test_the_logits_depend_on_the_condition_token(trained: Path) -> None:
    model = load_model(trained)
    ids = cls_ids()
    with torch.no_grad():
        logits = [model(ids)] + [
            model(model.conditioning.encode(ids, [c] * 3, [""] * 3)) for c in ("a", "b", None)
        ]
    assert logits[1].shape[-1] == VOCAB  # the head never predicts a condition id
    for i in range(len(logits)):
        for j in range(i):
            assert not torch.allclose(logits[i], logits[j]), (i, j)


class SignalAt(L.Callback):
    """Sends this process SIGTERM as training step ``step`` starts."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            signal.raise_signal(signal.SIGTERM)


@pytest.fixture
def handled() -> Iterator[None]:
    with interrupt.signals():
        yield


@pytest.mark.slow
def test_an_interrupted_conditional_run_resumes_to_the_uninterrupted_weights(
    dna_table: Path, tmp_path: Path, handled
) -> None:
    """The label dropout of each step comes back with its seed, as the noise does."""
    pinned = [*LABEL, "conditioning.params.p_uncond=0.5", "trainer.max_steps=8"]
    pinned += ["trainer.checkpoint_every_n_steps=4", "trainer.precision=32-true"]
    whole = train(micro_config(dna_table, tmp_path, "experiment=w", "run=w", *pinned))
    cut = micro_config(dna_table, tmp_path, "experiment=c", "run=c", *pinned)
    with pytest.raises(Interrupted):
        train(cut, callbacks=[SignalAt(3)])
    resumed = train(micro_config(dna_table, tmp_path, "experiment=c", "run=c", *pinned))
    assert_same_weights(whole, resumed)


# ---------------------------------------------------------------------------- labels in the data


def labelled(path: Path, labels: list[str | None], valid: str = "a") -> Path:
    """A table of 40 training records labelled in turn from ``labels`` and 8 valid ones."""
    seqs = markov_sequences(48, 60, seed=3)
    frame = pd.DataFrame(
        {
            "name": [f"s{i}" for i in range(48)],
            "sequence": seqs,
            "split": ["train"] * 40 + ["valid"] * 8,
            "label": [labels[i % len(labels)] for i in range(40)] + [valid] * 8,
        }
    )
    frame.to_parquet(path, index=False)
    return path


def test_a_valid_label_absent_from_training_is_an_error_naming_the_file_and_record(
    tmp_path: Path,
) -> None:
    table = labelled(tmp_path / "t.parquet", ["a", "b"], valid="c")
    cfg = micro_config(table, tmp_path, *LABEL, "trainer.max_steps=1")
    with pytest.raises(D3lmError, match=r"t\.parquet \(valid split\): record 's40': label 'c'"):
        train(cfg)


@pytest.mark.parametrize(
    ("labels", "match"),
    [([None, "a"], "record 's0' has no 'label'"), (["", "a"], "record 's0' has no 'label'")],
)
def test_a_record_without_a_label_is_an_error_naming_it(tmp_path: Path, labels, match) -> None:
    table = labelled(tmp_path / "t.parquet", labels)
    with pytest.raises(D3lmError, match=r"t\.parquet: " + match):
        train(micro_config(table, tmp_path, *LABEL, "trainer.max_steps=1"))


def test_the_datamodule_encodes_every_split_and_needs_the_label_column(tmp_path: Path) -> None:
    table = pd.read_parquet(labelled(tmp_path / "t.parquet", ["b", "a"]))
    tok = NT6merTokenizer()
    data = SequenceDataModule(table, tok, conditioning=label(), source="t.parquet")
    train_ids, valid_ids = data.split_ids("train"), data.split_ids("valid")
    assert train_ids[:4, 0].tolist() == [VOCAB + 1, VOCAB, VOCAB + 1, VOCAB]
    assert (valid_ids[:, 0] == VOCAB).all()  # validation keeps the labels
    plain = SequenceDataModule(table, tok, conditioning=NoConditioning(VOCAB))
    assert torch.equal(plain.split_ids("train")[:, 1:], train_ids[:, 1:])
    assert (plain.split_ids("train")[:, 0] == tok.cls_id).all()
    bare = table.drop(columns="label")
    with pytest.raises(D3lmError, match=r"t\.parquet \(train split\): .*'label' column"):
        SequenceDataModule(bare, tok, conditioning=label(), source="t.parquet").split_ids("train")


# ---------------------------------------------------------------------------- NT v2 interop


def test_export_leaves_the_condition_table_out_and_import_starts_one_fresh(
    trained: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = load_model(trained)
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    with caplog.at_level(logging.WARNING):
        out = export_nt(checkpoint, tmp_path / "out", source="cond.ckpt")
    assert "cond.ckpt: a conditional model" in caplog.text and "left out" in caplog.text
    plain = load_model(write_run(import_nt(out), tmp_path / "plain"))
    assert plain.conditioning.n_tokens == 0 and CONDITION_TABLE not in plain.state_dict()
    ids = cls_ids()
    null = model.conditioning.unconditional(ids)
    with torch.no_grad():  # the exported network is the conditional one with no label
        torch.testing.assert_close(plain(ids), model(null), atol=1e-5, rtol=0)
        assert not torch.allclose(plain(ids), model(ids), atol=1e-3)  # not the <cls> reading
    section = dict(model.hparams.conditioning)
    imported = import_nt(out, conditioning=section)
    assert imported["state_dict"][CONDITION_TABLE].shape == (3, model.backbone_config.hidden)
    again = load_model(write_run(imported, tmp_path / "cond"))
    assert again.conditioning.classes == ("a", "b")
    assert load_config(files=[tmp_path / "cond" / "config.yaml"]).conditioning.name == "label"
    fresh = imported["state_dict"][CONDITION_TABLE]
    assert torch.equal(import_nt(out, section)["state_dict"][CONDITION_TABLE], fresh)  # seeded
    # the command: --classes makes the imported run conditional
    assert main(["import-nt", str(out), "--out", str(tmp_path / "cli"), "--classes", "a", "b"]) == 0
    assert load_model(tmp_path / "cli").conditioning.classes == ("a", "b")


def test_a_classifier_fine_tuned_from_a_conditional_run_reads_its_unconditional_network(
    trained: Path,
) -> None:
    """Fine-tuning starts from the encoder with no label: the condition table left out and
    ``<cls>`` embedded as the null token, every other tensor as trained."""
    model = load_model(trained)
    cfg = OmegaConf.load(FINETUNE_YAML)
    cfg.checkpoint = str(trained)
    init = read_init(cfg)
    assert init.weights is not None
    full = model.state_dict()
    state = {n.removeprefix("encoder."): t for n, t in full.items() if n.startswith("encoder.")}
    assert set(init.weights) == set(state) - {"embeddings.condition_embeddings.weight"}
    words = init.weights["embeddings.word_embeddings.weight"]
    cls_id = model.tokenizer.cls_id
    null = state["embeddings.condition_embeddings.weight"][-1]
    assert torch.equal(words[cls_id], null)
    others = torch.arange(len(words)) != cls_id
    assert torch.equal(words[others], state["embeddings.word_embeddings.weight"][others])


def test_a_checkpoint_from_before_conditioning_loads_and_samples_as_before(
    dna_table: Path, tmp_path: Path
) -> None:
    """An unconditional run whose checkpoint and config.yaml lack the conditioning section (as
    every run trained before it existed) loads, and ``d3lm sample`` draws the same FASTA."""
    steps = ["trainer.max_steps=2", "trainer.precision=32-true", "run=old"]
    run = train(micro_config(dna_table, tmp_path, *steps))
    argv = ["sample", str(run), "--n", "5", "--bp", "60", "--workers", "1", "steps=6",
            "sample.progress=false"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "now.fa")]) == 0
    last = RunDir(run).last
    saved = torch.load(last, map_location="cpu", weights_only=False)
    del saved["hyper_parameters"]["conditioning"]
    torch.save(saved, last)
    config = OmegaConf.load(RunDir(run).config)
    del config["conditioning"]
    OmegaConf.save(config, RunDir(run).config)
    assert load_model(run).conditioning.n_tokens == 0
    assert main([*argv, "--out", str(tmp_path / "old.fa")]) == 0
    assert (tmp_path / "old.fa").read_text() == (tmp_path / "now.fa").read_text()
