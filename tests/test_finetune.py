"""Fine-tuning: the whole path learns a planted signal from random init (ground truth), pooling
and freezing do exactly what they say, the logged MCC is the confusion-matrix MCC, checkpoints
(diffusion runs, imported NT v2 runs) hand over their encoder exactly, bad input is refused by
name before any work, predictions are probabilities, and runs are skipped or resumed."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from d3lm.cli import main
from d3lm.config import load_config
from d3lm.errors import D3lmError
from d3lm.interop.nt_v2 import export_nt, import_nt, write_run
from d3lm.lit.classifier import SequenceClassifier
from d3lm.rundir import RunDir
from d3lm.stages.checkpoints import read_checkpoint
from d3lm.stages.classifier import load_classifier, new_model
from d3lm.stages.finetune import finetune, load_finetune_config
from d3lm.stages.predict import predict
from d3lm.stages.train import train
from d3lm.tasks import load_task

pytestmark = pytest.mark.usefixtures("one_thread")

MOTIFS = ("TGACGTCATGCA", "GGCCAATTGGCC")
#: Random init from scratch, with a tokenizer and pooling a small model learns fast.
RANDOM_INIT = (
    "model.preset=micro",
    "tokenizer.name=kmer",
    "tokenizer.params.k=3",
    "pooling=mean",
)


def planted(
    path: Path, n: int, motifs: tuple[str | None, ...], seed: int = 0, bp: int = 60
) -> Path:
    """A labelled CSV: class c holds ``motifs[c]`` (None: nothing) at a random place in uniform
    random DNA; splits drawn at random (70/15/15), classes in turn."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        seq = "".join(rng.choice(list("ACGT"), bp))
        label = i % len(motifs)
        motif = motifs[label]
        if motif is not None:
            at = int(rng.integers(0, bp - len(motif) + 1))
            seq = seq[:at] + motif + seq[at + len(motif) :]
        u = rng.random()
        split = "valid" if u < 0.15 else "test" if u < 0.3 else "train"
        rows.append({"name": f"r{i}", "sequence": seq, "label": f"c{label}", "split": split})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def config(root: Path, task: Path, *overrides: str) -> DictConfig:
    return load_finetune_config(
        overrides=[
            f"task={task}",
            f"runs_dir={root / 'runs'}",
            f"results_dir={root / 'results'}",
            f"cache_dir={root / 'cache'}",
            "batch_size=16",
            "max_steps=20",
            "val_check_interval=10",
            "warmup_steps=2",
            "lr_head=3e-3",
            "lr_body=3e-3",
            "trainer.log_every_n_steps=5",
            *overrides,
        ]
    )


def log(run: Path) -> pd.DataFrame:
    return RunDir(run).log()


@pytest.fixture(scope="module")
def binary_task(tmp_path_factory) -> Path:
    return planted(tmp_path_factory.mktemp("task") / "binary.csv", 240, (None, MOTIFS[0]))


@pytest.fixture(scope="module")
def diffusion_run(tmp_path_factory, dna_table) -> Path:
    """A micro diffusion run (nt6mer), trained for 2 steps by the runner."""
    root = tmp_path_factory.mktemp("pretrain")
    cfg = load_config(
        "micro",
        overrides=[
            f"data.dataset={dna_table}",
            f"runs_dir={root}",
            f"cache_dir={root / 'cache'}",
            f"results_dir={root / 'results'}",
            "experiment=pre",
            "run=diffusion",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
        ],
    )
    return train(cfg)


@pytest.fixture(scope="module")
def nt_run(tmp_path_factory, diffusion_run) -> Path:
    """An ``import-nt`` run: the diffusion run exported as an NT v2 folder and imported back
    (weights, no optimiser state)."""
    root = tmp_path_factory.mktemp("nt")
    saved = read_checkpoint(diffusion_run / "checkpoints" / "last.ckpt")
    folder = export_nt(saved, root / "hf")
    return write_run(import_nt(folder), root / "imported")


def encoder_weights(path: Path) -> dict[str, torch.Tensor]:
    state = read_checkpoint(path, hparams=())["state_dict"]
    return {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}


# -- ground truth ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_planted_motif_is_learned_from_random_init(tmp_path: Path) -> None:
    """Class 1 sequences hold a 12-mer at a random place, class 0 none: a micro model from
    random init reaches val and test MCC > 0.9 within 300 steps."""
    task = planted(tmp_path / "motif.csv", 2000, (None, MOTIFS[0]))
    cfg = config(
        tmp_path,
        task,
        *RANDOM_INIT,
        "batch_size=32",
        "max_steps=300",
        "val_check_interval=30",
        "patience=100",
    )
    start = time.perf_counter()
    run = finetune(cfg)
    seconds = time.perf_counter() - start
    metrics = json.loads((run / "metrics.json").read_text())
    print(f"planted motif: {metrics['valid']} {metrics['test']} in {seconds:.1f} s")
    assert metrics["init"] == "random"
    assert metrics["valid"]["mcc"] > 0.9
    assert metrics["test"]["mcc"] > 0.9
    assert log(run)["val/mcc"].max() == pytest.approx(metrics["valid"]["mcc"])


# -- the module -----------------------------------------------------------------------------------


def micro_classifier(**changes) -> SequenceClassifier:
    L.seed_everything(0, verbose=False)
    args = {
        "tokenizer": {"name": "kmer", "params": {"k": 3}},
        "model": {"preset": "micro", "params": {}},
        "classes": ["a", "b", "c"],
        "pooling": "mean",
        **changes,
    }
    return SequenceClassifier(**args).eval()


def test_mean_pooling_is_the_masked_mean_and_padding_changes_nothing() -> None:
    model = micro_classifier()
    seqs = ["ACGTACGTACGTAC", "ACG", "TTTTGGGGCCCCAAAATT"]
    ids = model.encode(seqs, ["x", "y", "z"], "test")
    assert (ids[:, 0] == model.tokenizer.cls_id).all()
    pad = model.tokenizer.pad_id
    assert (ids == pad).any()  # rows of different lengths: padding is present
    with torch.no_grad():
        pooled = model.pooled(ids)
        states = model.encoder(ids, ids != pad)
        for i, seq in enumerate(seqs):
            n = int((ids[i] != pad).sum())  # <cls> + the sequence's tokens
            expected = states[i, 1:n].mean(dim=0)  # written here: tokens 1..n-1
            torch.testing.assert_close(pooled[i], expected, atol=1e-6, rtol=0)
            alone = model.pooled(model.encode([seq], ["x"], "test"))[0]
            torch.testing.assert_close(pooled[i], alone, atol=1e-5, rtol=0)
    cls_model = micro_classifier(pooling="cls")
    cls_model.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(cls_model.pooled(ids), states[:, 0])


def test_cls_is_prepended_when_the_tokenizer_does_not_emit_it() -> None:
    model = micro_classifier(tokenizer={"name": "kmer", "params": {"k": 3, "add_cls": False}})
    ids = model.encode(["ACGTAC", "A"], ["x", "y"], "test")
    assert ids.tolist()[0][0] == model.tokenizer.cls_id
    assert ids.tolist()[1][:2] == [model.tokenizer.cls_id, *model.tokenizer.encode("A")]


def test_balanced_class_weights_are_inverse_training_frequency(tmp_path: Path) -> None:
    rows = [("c0", 60), ("c1", 30), ("c2", 10)]
    frame = pd.DataFrame(
        [
            {"name": f"{label}-{i}", "sequence": "ACGTACGTAC", "label": label, "split": "train"}
            for label, count in rows
            for i in range(count)
        ]
        + [{"name": "v", "sequence": "ACGT", "label": "c0", "split": "valid"}]
        + [{"name": "t", "sequence": "ACGT", "label": "c0", "split": "test"}]
    )
    frame.to_csv(tmp_path / "unbalanced.csv", index=False)
    cfg = config(tmp_path, tmp_path / "unbalanced.csv", *RANDOM_INIT, "class_weights=balanced")
    model = new_model(cfg, load_task(str(tmp_path / "unbalanced.csv"), tmp_path))
    n = sum(count for _, count in rows)
    expected = torch.tensor([n / (3 * count) for _, count in rows])
    torch.testing.assert_close(model.class_weight, expected)
    logits, y = torch.randn(7, 3), torch.tensor([0, 1, 2, 2, 1, 0, 2])
    nll = -logits.log_softmax(dim=-1)[torch.arange(7), y]
    weighted = (expected[y] * nll).sum() / expected[y].sum()
    torch.testing.assert_close(model.loss(logits, y), weighted)
    none = new_model(
        config(tmp_path, tmp_path / "unbalanced.csv", *RANDOM_INIT),
        load_task(str(tmp_path / "unbalanced.csv"), tmp_path),
    )
    assert none.class_weight is None


# -- initialisation -------------------------------------------------------------------------------


def test_init_from_a_diffusion_run_copies_the_encoder_exactly(
    tmp_path: Path, binary_task: Path, diffusion_run: Path
) -> None:
    cfg = config(tmp_path, binary_task, f"checkpoint={diffusion_run}")
    model = new_model(cfg, load_task(str(binary_task), tmp_path))
    pretrained = encoder_weights(diffusion_run / "checkpoints" / "last.ckpt")
    ours = model.encoder.state_dict()
    assert set(ours) == set(pretrained)
    for name, tensor in pretrained.items():
        assert torch.equal(ours[name], tensor), name
    assert not any(name.startswith("head.") and "decoder" in name for name in model.state_dict())
    assert model.hparams.tokenizer["name"] == "nt6mer"  # the checkpoint's


@pytest.mark.parametrize("freeze", [1, "all"])
def test_freeze_keeps_exactly_the_frozen_parameters(
    tmp_path: Path, binary_task: Path, diffusion_run: Path, freeze
) -> None:
    run = finetune(config(tmp_path, binary_task, f"checkpoint={diffusion_run}", f"freeze={freeze}"))
    before = encoder_weights(diffusion_run / "checkpoints" / "last.ckpt")
    after = encoder_weights(run / "checkpoints" / "last.ckpt")
    frozen = {n for n in before if freeze == "all" or n.startswith(("embeddings.", "layers.0."))}
    assert 0 < len(frozen) < len(before) if freeze == 1 else frozen == set(before)
    for name in before:
        same = torch.equal(before[name], after[name])
        assert same == (name in frozen), name


def test_an_import_nt_run_loads_and_fine_tunes(
    tmp_path: Path, binary_task: Path, nt_run: Path
) -> None:
    assert "optimizer_states" not in torch.load(
        nt_run / "checkpoints" / "last.ckpt", weights_only=True
    )
    cfg = config(tmp_path, binary_task, f"checkpoint={nt_run}", "max_steps=10")
    model = new_model(cfg, load_task(str(binary_task), tmp_path))
    for name, tensor in encoder_weights(nt_run / "checkpoints" / "last.ckpt").items():
        assert torch.equal(model.encoder.state_dict()[name], tensor), name
    run = finetune(cfg)
    assert json.loads((run / "metrics.json").read_text())["init"] == "imported"


# -- metrics --------------------------------------------------------------------------------------


def confusion_mcc(confusion: np.ndarray) -> float:
    """Gorodkin's multiclass MCC: (c*s - sum_k p_k t_k) / sqrt((s^2 - sum p_k^2)(s^2 - sum t_k^2))
    with c correct, s samples, p_k predicted and t_k true counts of class k."""
    c, s = np.trace(confusion), confusion.sum()
    t, p = confusion.sum(axis=1), confusion.sum(axis=0)
    return float((c * s - p @ t) / math.sqrt((s * s - p @ p) * (s * s - t @ t)))


def test_logged_scores_are_the_confusion_matrix_scores(tmp_path: Path) -> None:
    task = planted(tmp_path / "three.csv", 300, (None, *MOTIFS), seed=3)
    cfg = config(tmp_path, task, *RANDOM_INIT, "max_steps=30")
    run = finetune(cfg)
    metrics = json.loads((run / "metrics.json").read_text())
    model = load_classifier(run / "checkpoints" / "best.ckpt").eval()
    table = load_task(str(task), tmp_path)
    for split in ("valid", "test"):
        rows = table.frame[table.frame["split"] == split]
        with torch.no_grad():
            ids = model.encode(rows["sequence"].tolist(), rows["name"].tolist(), "t")
            predicted = model(ids).argmax(dim=-1).numpy()
        confusion = np.zeros((3, 3), dtype=np.int64)
        np.add.at(confusion, (rows["y"].to_numpy(), predicted), 1)
        mcc = confusion_mcc(confusion)
        recall = np.diag(confusion) / confusion.sum(axis=1)
        precision = np.diag(confusion) / np.maximum(confusion.sum(axis=0), 1)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0)
        assert metrics[split]["mcc"] == pytest.approx(mcc, abs=1e-5)
        assert metrics[split]["accuracy"] == pytest.approx(np.trace(confusion) / len(rows))
        assert metrics[split]["f1"] == pytest.approx(f1.mean(), abs=1e-5)
    assert 0 < metrics["valid"]["mcc"] < 1  # neither trivial nor perfect: the formula shows
    logged = log(run)
    assert logged["val/mcc"].dropna().max() == pytest.approx(metrics["valid"]["mcc"])
    assert logged["test/mcc"].dropna().iloc[-1] == pytest.approx(metrics["test"]["mcc"])
    assert logged["train/loss"].notna().any()
    rows = pd.read_csv(tmp_path / "results" / "finetune.csv")
    assert list(rows.columns) == ["run", "task", "init", "seed", "split", "metric", "value", "git"]
    assert set(rows["init"]) == {"random"} and set(rows["task"]) == {"three"}
    assert len(rows) == 6


# -- errors ---------------------------------------------------------------------------------------


def test_a_record_too_long_for_the_backbone_is_named(tmp_path: Path, binary_task: Path) -> None:
    cfg = config(tmp_path, binary_task, *RANDOM_INIT, "model.params.max_len=20")
    with pytest.raises(D3lmError, match=r"record 'r0': 60 bp make 21 tokens .*max_len 20"):
        finetune(cfg)
    assert not (tmp_path / "runs").exists()


def test_a_tokenizer_other_than_the_checkpoints_is_refused(
    tmp_path: Path, binary_task: Path, diffusion_run: Path
) -> None:
    cfg = config(
        tmp_path,
        binary_task,
        f"checkpoint={diffusion_run}",
        "tokenizer.name=kmer",
        "tokenizer.params.k=3",
    )
    last = diffusion_run / "checkpoints" / "last.ckpt"
    with pytest.raises(D3lmError, match=rf"{last}: .*nt6mer\(\).*kmer\(k=3\)"):
        finetune(cfg)
    same = config(tmp_path, binary_task, f"checkpoint={diffusion_run}", "tokenizer.name=nt6mer")
    assert new_model(same, load_task(str(binary_task), tmp_path)).hparams.tokenizer["name"] == (
        "nt6mer"
    )
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("pooling=max", r"unknown pooling 'max'; known pooling plugins: cls, mean"),
        ("head.name=deep", r"unknown classifier_head 'deep'"),
        ("class_weights=inverse", r"class_weights='inverse': expected one of none, balanced"),
        ("freeze=9", r"freeze=9: expected none, all or a number of blocks in 0..2"),
        ("lr_head=0", r"lr_head=0: must be > 0"),
    ],
)
def test_bad_settings_are_refused_before_any_work(
    tmp_path: Path, binary_task: Path, override: str, message: str
) -> None:
    with pytest.raises(D3lmError, match=message):
        finetune(config(tmp_path, binary_task, *RANDOM_INIT, override))
    assert not (tmp_path / "runs").exists()


def test_unknown_keys_and_model_with_a_checkpoint_are_errors(
    tmp_path: Path, binary_task: Path, diffusion_run: Path, capsys
) -> None:
    assert main(["finetune", f"task={binary_task}", "poolin=cls"]) == 2
    assert "poolin" in capsys.readouterr().err
    cfg = config(tmp_path, binary_task, f"checkpoint={diffusion_run}", "model.preset=micro")
    with pytest.raises(D3lmError, match=re.escape("model.* applies to checkpoint=none only")):
        finetune(cfg)


# -- predict, skip, resume ------------------------------------------------------------------------


def test_cli_finetune_then_predict_writes_probabilities(
    tmp_path: Path, binary_task: Path, capsys
) -> None:
    args = [f"{o}" for o in RANDOM_INIT]
    root = [f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'r'}"]
    quick = ["max_steps=10", "val_check_interval=5", "batch_size=16", f"cache_dir={tmp_path}"]
    assert main(["finetune", f"task={binary_task}", *args, *root, *quick]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]  # task, init, test scores, run
    assert summary.startswith("binary (init random): test mcc ")
    run = Path(summary.rsplit("; run ", 1)[1])
    assert run == tmp_path / "runs" / "finetune" / "binary-random-seed0"
    data = tmp_path / "new.fasta"
    data.write_text(">one\nACGTACGTACGTTGACGTCATGCA\n>two\nGGGGCCCCAAAA\n>three\nA\n")
    out = tmp_path / "out" / "p.csv"
    assert main(["predict", str(run), "--data", str(data), "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == ["name", "p_c0", "p_c1", "predicted"]
    assert list(table["name"]) == ["one", "two", "three"]
    np.testing.assert_allclose(table[["p_c0", "p_c1"]].sum(axis=1), 1.0, atol=1e-6)
    best = np.where(table["p_c1"] > table["p_c0"], "c1", "c0")
    assert list(table["predicted"]) == list(best)
    assert predict(run, data, tmp_path / "again.csv").read_text() == out.read_text()
    assert main(["predict", str(run), "--data", str(tmp_path / "nope.fa"), "--out", str(out)]) == 2


def test_a_finished_run_is_skipped(tmp_path: Path, binary_task: Path) -> None:
    cfg = config(tmp_path, binary_task, *RANDOM_INIT, "max_steps=10")
    run = finetune(cfg)
    stamp = (run / "metrics.json").stat().st_mtime_ns
    (tmp_path / "results" / "finetune.csv").unlink()
    assert finetune(cfg) == run
    assert (run / "metrics.json").stat().st_mtime_ns == stamp
    assert [p.name for p in (run / "logs").iterdir()] == ["version_0"]
    assert len(pd.read_csv(tmp_path / "results" / "finetune.csv")) == 6  # rows written again
    other = config(tmp_path, binary_task, *RANDOM_INIT, "max_steps=10", "lr_head=1e-2")
    with pytest.raises(D3lmError, match=r"holds a run with other settings \(lr_head"):
        finetune(other)


def test_precision_auto_is_recorded_as_its_choice_and_reruns_skip(
    tmp_path: Path, binary_task: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def emulated(dtype: torch.dtype, *args: object, **kwargs: object) -> float:
        return 0.5 if dtype == torch.bfloat16 else 0.01  # bf16 50x slower than fp32

    monkeypatch.setattr("d3lm.precision.matmul_seconds", emulated)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = config(tmp_path, binary_task, *RANDOM_INIT, "max_steps=10", "trainer.precision=auto")
    run = finetune(cfg)
    assert OmegaConf.load(run / "config.yaml").trainer.precision == "32-true"
    stamp = (run / "metrics.json").stat().st_mtime_ns
    assert finetune(cfg) == run
    assert (run / "metrics.json").stat().st_mtime_ns == stamp


def test_max_epochs_sets_the_number_of_steps(tmp_path: Path, binary_task: Path) -> None:
    run = finetune(config(tmp_path, binary_task, *RANDOM_INIT, "max_epochs=2", "patience=50"))
    train = (load_task(str(binary_task), tmp_path).frame["split"] == "train").sum()
    assert json.loads((run / "metrics.json").read_text())["steps"] == 2 * (train // 16)


class Interrupt(L.Callback):
    """Stops training with an error after ``step`` steps, as a killed job would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


def test_an_interrupted_run_resumes_to_the_uninterrupted_weights(
    tmp_path: Path, binary_task: Path
) -> None:
    whole = finetune(config(tmp_path / "a", binary_task, *RANDOM_INIT, "max_steps=30"))
    cfg = config(tmp_path / "b", binary_task, *RANDOM_INIT, "max_steps=30")
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        finetune(cfg, callbacks=[Interrupt(15)])
    run = cfg.runs_dir + "/finetune/binary-random-seed0"
    assert not Path(run, "metrics.json").exists()
    assert read_checkpoint(Path(run, "checkpoints/last.ckpt"), hparams=())["global_step"] == 10
    resumed = finetune(cfg)
    assert sorted(p.name for p in (resumed / "logs").iterdir()) == ["version_0", "version_1"]
    a = read_checkpoint(whole / "checkpoints/last.ckpt", hparams=())
    b = read_checkpoint(resumed / "checkpoints/last.ckpt", hparams=())
    assert a["global_step"] == b["global_step"] == 30
    for name, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][name]), name
    metrics = [json.loads((r / "metrics.json").read_text()) for r in (whole, resumed)]
    assert metrics[0]["test"] == metrics[1]["test"]
