"""The fine-tuned classifier: the whole path learns a planted signal from random init (ground
truth), pooling does exactly what it says, ``<cls>`` is prepended when the tokenizer does not emit
it, balanced class weights are the inverse training frequency, and the logged MCC, F1 and accuracy
are the confusion-matrix scores."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from finetune_helpers import MOTIFS, RANDOM_INIT, config, planted

from d3lm.lit.classifier import SequenceClassifier
from d3lm.rundir import RunDir
from d3lm.stages.classifier import load_classifier, new_model
from d3lm.stages.finetune import finetune
from d3lm.tasks import load_task

pytestmark = pytest.mark.usefixtures("one_thread")


def log(run: Path) -> pd.DataFrame:
    return RunDir(run).log()


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
