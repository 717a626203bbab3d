"""The good twins of the split cases of tests/test_bad_inputs_params.py: a label file with train
and test only gets a validation split carved from train by a hash of the record name (never taking
a class out of train; a file with a valid split is left alone), ``valid_fraction=0`` fine-tunes and
pretrains without one, and ``d3lm finetune`` ends with a one-line summary of its test scores."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from badinput import RANDOM_INIT, labelled

from d3lm.cli import main
from d3lm.data.tables import hash_split
from d3lm.tasks import load_task

# -- good twins: splits, valid_fraction=0, the summary line ---------------------------------------


def test_train_and_test_only_gets_valid_carved_from_train_by_name_hash(tmp_path: Path) -> None:
    path = labelled(tmp_path / "two.csv", 300, ("train", "train", "train", "test"))
    original = pd.read_csv(path)
    table = load_task(str(path), tmp_path, valid_fraction=0.2)
    frame = table.frame.set_index("name")
    was_train = original.set_index("name")["split"] == "train"
    hashed = hash_split(original["name"], 0.2, 0.0).set_axis(original["name"])
    expected = np.where(~was_train, "test", np.where(hashed == "valid", "valid", "train"))
    assert (frame.loc[original["name"], "split"].to_numpy() == expected).all()
    moved = int((frame["split"] == "valid").sum())
    assert 0 < moved < was_train.sum()
    assert table.notes == (
        f"{path}: no valid split; {moved} of {int(was_train.sum())} train records moved to "
        "valid (valid_fraction=0.2, by a hash of the record name)",
    )
    again = load_task(str(path), tmp_path, valid_fraction=0.2)
    pd.testing.assert_frame_equal(again.frame, table.frame)  # the same records every time
    pd.testing.assert_frame_equal(pd.read_csv(path), original)  # the file is untouched
    none = load_task(str(path), tmp_path, valid_fraction=0.0)
    assert set(none.frame["split"]) == {"train", "test"} and none.notes == ()


def test_carving_never_takes_a_class_out_of_train(tmp_path: Path) -> None:
    """A class whose only train record the hash picks keeps it in train."""
    names = pd.Series([f"rare{i}" for i in range(200)])
    picked = names[hash_split(names, 0.2, 0.0) == "valid"].iloc[0]
    path = labelled(tmp_path / "rare.csv", 100, ("train", "train", "test"))
    frame = pd.read_csv(path)
    rare = {"name": picked, "sequence": "ACGT" * 15, "label": "z", "split": "train"}
    pd.concat([frame, pd.DataFrame([rare])]).to_csv(path, index=False)
    table = load_task(str(path), tmp_path, valid_fraction=0.2)
    assert table.frame.set_index("name").loc[picked, "split"] == "train"
    assert "z" in table.info.classes and (table.frame["split"] == "valid").any()


def test_a_file_with_a_valid_split_is_left_alone(tmp_path: Path) -> None:
    path = labelled(tmp_path / "three.csv", 120, ("train", "train", "valid", "test"))
    table = load_task(str(path), tmp_path, valid_fraction=0.2)
    assert table.notes == ()
    assert list(table.frame["split"]) == list(pd.read_csv(path)["split"])


def test_hash_split_with_a_zero_fraction_makes_no_such_split() -> None:
    names = pd.Series([f"rec{i}" for i in range(5000)])
    both = hash_split(names, 0.1, 0.1)
    no_valid, no_test = hash_split(names, 0.0, 0.1), hash_split(names, 0.1, 0.0)
    assert "valid" not in set(no_valid) and "test" not in set(no_test)
    assert (no_test == "valid").equals(both == "valid")  # the same records, by the same hash
    assert set(hash_split(names, 0.0, 0.0)) == {"train"}


def _finetune_argv(root: Path, task: Path, *extra: str) -> list[str]:
    return [
        "finetune",
        f"task={task}",
        f"runs_dir={root / 'runs'}",
        f"results_dir={root / 'results'}",
        f"cache_dir={root / 'cache'}",
        "batch_size=16",
        "max_steps=6",
        "val_check_interval=3",
        *RANDOM_INIT,
        *extra,
    ]


@pytest.mark.slow
def test_finetune_ends_with_a_summary_and_records_the_carved_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, one_thread
) -> None:
    task = labelled(tmp_path / "two.csv", 200, ("train", "train", "train", "test"))
    with caplog.at_level(logging.INFO, logger="lightning"):
        assert main(_finetune_argv(tmp_path, task)) == 0
    run = tmp_path / "runs" / "finetune" / "two-random-seed0"
    metrics = json.loads((run / "metrics.json").read_text())
    note = load_task(str(task), tmp_path).notes[0]
    assert metrics["notes"] == [note]
    assert [r.getMessage() for r in caplog.records].count(note) == 1
    test = metrics["test"]
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line == (
        f"two (init random): test mcc {test['mcc']:.4f}, f1 {test['f1']:.4f}, "
        f"accuracy {test['accuracy']:.4f}; run {run}"
    )
    assert main(_finetune_argv(tmp_path, task)) == 0  # finished: skipped, the same summary
    assert capsys.readouterr().out.strip().splitlines()[-1] == line


@pytest.mark.slow
def test_valid_fraction_zero_fine_tunes_without_validation(tmp_path: Path, one_thread) -> None:
    task = labelled(tmp_path / "plain.csv", 160, None)
    assert main(_finetune_argv(tmp_path, task, "valid_fraction=0")) == 0
    run = tmp_path / "runs" / "finetune" / "plain-random-seed0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert "valid" not in metrics and set(metrics["test"]) == {"mcc", "f1", "accuracy"}
    assert metrics["best_checkpoint"] == "checkpoints/last.ckpt"
    assert metrics["best_step"] == metrics["steps"] == 6  # no early stop, the last step scored
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]
    log = pd.read_csv(next(run.glob("logs/version_*/metrics.csv")))
    assert not any(c.startswith("val/") for c in log.columns)
    rows = pd.read_csv(tmp_path / "results" / "finetune.csv")
    assert set(rows["split"]) == {"test"} and len(rows) == 3


@pytest.mark.slow
def test_valid_fraction_zero_pretrains_without_validation(
    tmp_path: Path, dna_table: Path, one_thread
) -> None:
    plain = tmp_path / "plain.csv"
    pd.read_parquet(dna_table).drop(columns=["split"]).to_csv(plain, index=False)
    argv = [
        "train",
        "--scale",
        "micro",
        f"data.dataset={plain}",
        f"runs_dir={tmp_path / 'runs'}",
        f"cache_dir={tmp_path / 'cache'}",
        "experiment=e",
        "run=r",
        "trainer.max_steps=2",
        "data.valid_fraction=0",
    ]
    assert main(argv) == 2  # validation asked for, none to validate on: refused, by name
    assert not (tmp_path / "runs" / "e" / "r").exists()
    assert main([*argv, "trainer.limit_val_batches=0"]) == 0
    assert (tmp_path / "runs" / "e" / "r" / "checkpoints" / "last.ckpt").exists()
