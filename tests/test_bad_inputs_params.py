"""Parameters, devices and splits a user gets wrong, through the CLI, in the style of
``test_bad_inputs.py``: exit code 2, a one-line message naming the key, value or file and the
reason, no traceback, and every file under the test's folder as it was (no empty dataset cached,
no run, sample or result folder begun). Then the good twins: a label file with train and test
only gets a validation split carved from train, ``valid_fraction=0`` trains without one, and
``d3lm finetune`` ends with a one-line summary of its test scores."""

from __future__ import annotations

import functools
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import pytest
from badinput import clear_error, snapshot, write_fasta
from conftest import markov_sequences
from lightning.pytorch.accelerators import CUDAAccelerator, MPSAccelerator

from d3lm.cli import main
from d3lm.data.tables import hash_split
from d3lm.devices import check_accelerator, present
from d3lm.errors import D3lmError
from d3lm.params import PositiveInt, Range, Seed, check_values
from d3lm.tasks import load_task

MOTIF = "TGACGTCATGCA"
#: A micro classifier from random weights: nothing to download, seconds to train.
RANDOM_INIT = ("model.preset=micro", "tokenizer.name=kmer", "tokenizer.params.k=3", "pooling=mean")


def labelled(path: Path, n: int, splits: tuple[str, ...] | None, seed: int = 0) -> Path:
    """A CSV of 60-bp records, class c1 holding ``MOTIF``; ``splits``: drawn per record from
    these (None: no split column)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        seq = "".join(rng.choice(list("ACGT"), 60))
        if i % 2:
            seq = seq[:20] + MOTIF + seq[32:]
        row = {"name": f"r{i}", "sequence": seq, "label": f"c{i % 2}"}
        if splits is not None:
            row["split"] = splits[int(rng.integers(len(splits)))]
        rows.append(row)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@dataclass(frozen=True)
class World:
    root: Path
    table: Path  #: a good parquet (60-bp records, train/valid/test)
    run: Path  #: a trained micro run (nt6mer tokens, max_len 1024)
    labels: Path  #: a label CSV without a split column

    def p(self, name: str) -> str:
        return str(self.root / name)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, dna_table: Path, one_thread) -> World:
    root = tmp_path_factory.mktemp("bad_params")
    good = [(f"s{i}", s) for i, s in enumerate(markov_sequences(16, 60, seed=3))]
    write_fasta(root / "samples.fa", good)
    write_fasta(root / "samples_x.fa", [*good[:15], ("g15", "ACGTX" + "A" * 55)])
    labels = labelled(root / "labels.csv", 120, None)
    argv = [
        "train",
        "--scale",
        "micro",
        f"data.dataset={dna_table}",
        f"runs_dir={root / 'runs'}",
        f"cache_dir={root / 'cache'}",
        "experiment=e",
        "run=r",
        "trainer.max_steps=2",
    ]
    assert main(argv) == 0
    return World(root, dna_table, root / "runs" / "e" / "r", labels)


def prepare(*params: str) -> Callable[[World], list[str]]:
    """``d3lm data prepare``, caching under the test folder (so a cached file would show)."""
    return lambda w: ["data", "prepare", *params, "--cache-dir", w.p("cache")]


def train_with(*extra: str) -> Callable[[World], list[str]]:
    return lambda w: [
        "train",
        "--scale",
        "micro",
        f"data.dataset={w.table}",
        f"runs_dir={w.root / 'runs'}",
        f"cache_dir={w.root / 'cache'}",
        "experiment=x",
        *extra,
    ]


def sample(*extra: str) -> Callable[[World], list[str]]:
    return lambda w: ["sample", str(w.run), "--n", "2", *[e.format(root=w.root) for e in extra]]


def finetune(*extra: str) -> Callable[[World], list[str]]:
    return lambda w: [
        "finetune",
        f"task={w.labels}",
        f"runs_dir={w.root / 'runs'}",
        f"results_dir={w.root / 'results'}",
        f"cache_dir={w.root / 'cache'}",
        *RANDOM_INIT,
        *extra,
    ]


def evaluate(samples: str, *extra: str) -> Callable[[World], list[str]]:
    return lambda w: [
        "evaluate",
        "--samples",
        w.p(samples),
        "--reference",
        str(w.table),
        "--features",
        "kmer",
        "--no-motifs",
        "--no-progress",
        *[e.format(root=w.root) for e in extra],
    ]


def sweep(*extra: str) -> Callable[[World], list[str]]:
    return lambda w: [
        "sweep",
        "sweeps/micro.yaml",
        "--study",
        "s",
        "--storage",
        f"journal://{w.p('s.log')}",
        *extra,
    ]


#: (case id, argv builder, substrings the message must hold)
CASES: list[tuple[str, Callable[[World], list[str]], list[str]]] = [
    # ---- dataset recipes and tasks: sizes, counts, lengths, orders, seeds
    ("copy-n-zero", prepare("copy", "n=0"), ["dataset 'copy'", "n=0", ">= 3"]),
    ("copy-n-negative", prepare("copy", "n=-5"), ["dataset 'copy'", "n=-5", ">= 3"]),
    ("copy-n-fraction", prepare("copy", "n=2.5"), ["n=2.5", "expected an integer"]),
    ("copy-length-text", prepare("copy", "length=abc"), ["length='abc'", "expected an integer"]),
    ("copy-length-zero", prepare("copy", "length=0"), ["length=0", ">= 1"]),
    ("markov-order-zero", prepare("markov", "order=0"), ["dataset 'markov'", "order=0", ">= 1"]),
    ("markov-order-fraction", prepare("markov", "order=1.5"), ["order=1.5", "an integer"]),
    (
        "markov-concentration",
        prepare("markov", "concentration=0"),
        ["concentration=0", "> 0"],
    ),
    (
        "markov-shorter-than-order",
        prepare("markov", "length=2", "order=3"),
        ["dataset 'markov'", "length 2 is shorter than order 3"],
    ),
    ("motifs-motif-zero", prepare("motifs", "motif=0"), ["dataset 'motifs'", "motif=0", ">= 1"]),
    ("motifs-spacing", prepare("motifs", "spacing=-1"), ["spacing=-1", ">= 0"]),
    ("motifs-too-short", prepare("motifs", "length=10"), ["length 10 is too short"]),
    ("corpus-count", prepare("chromosomes", "count=0"), ["dataset 'chromosomes'", "count=0"]),
    ("corpus-length", prepare("chromosomes", "length=-1"), ["length=-1", ">= 1"]),
    ("corpus-seed", prepare("chromosomes", "seed=-1"), ["seed=-1", "[0, 2**32)"]),
    ("task-length-fraction", prepare("promoter", "length=8.5"), ["task 'promoter'", "8.5"]),
    ("task-length-text", prepare("splice_donor", "length=abc"), ["length='abc'", "integer"]),
    ("task-seed", prepare("promoter", "seed=-1"), ["task 'promoter'", "seed=-1", "2**32"]),
    # ---- plugin parameters given as text, out of range or null where a number belongs
    (
        "backbone-hidden-text",
        train_with("model.params.hidden=abc"),
        ["backbone 'micro'", "hidden='abc'", "expected an integer"],
    ),
    (
        "schedule-p-text",
        train_with("diffusion.schedule.name=polynomial", "diffusion.schedule.params.p=abc"),
        ["schedule 'polynomial'", "p='abc'", "expected a number"],
    ),
    ("sampler-steps-text", sample("steps=abc"), ["sampler 'random'", "steps='abc'", "integer"]),
    ("sampler-temperature-text", sample("temperature=hot"), ["temperature='hot'", "number"]),
    ("sampler-top-k-zero", sample("top_k=0"), ["sampler 'random'", "top_k=0", ">= 1"]),
    ("sampler-block-text", sample("block_length=abc"), ["block_length='abc'", "integer or null"]),
    (
        "order-noise-negative",
        sample("--sampler", "confidence", "order_params.noise=-1"),
        ["unmask_order 'confidence'", "noise=-1", ">= 0"],
    ),
    (
        "remasker-eta-negative",
        sample("remasker=remdm_cap", "remasker_params.eta=-0.5"),
        ["remasker 'remdm_cap'", "eta=-0.5", ">= 0"],
    ),
    (
        "count-threshold",
        sample("count=threshold", "count_params.threshold=2"),
        ["commit_count 'threshold'", "threshold=2", "in [0, 1]"],
    ),
    ("head-width-negative", finetune("head.name=mlp", "head.params.width=-3"), ["width=-3"]),
    (
        "head-dropout-text",
        finetune("head.params.dropout=abc"),
        ["classifier_head 'linear'", "dropout='abc'", "expected a number"],
    ),
    ("head-dropout-one", finetune("head.params.dropout=1"), ["dropout=1", "in [0, 1)"]),
    # ---- seeds: one range everywhere
    ("seed", train_with("seed=-1"), ["seed=-1", "in [0, 2**32)"]),
    ("sample-seed", sample("sample.seed=-1"), ["sample.seed=-1", "in [0, 2**32)"]),
    ("finetune-seed", finetune("seed=-1"), ["seed=-1", "in [0, 2**32)"]),
    ("evaluate-seed", evaluate("samples.fa", "--seed", "-1"), ["--seed", "-1", "2**32"]),
    # ---- keys whose default is null: the range table says what they take
    ("max-epochs-text", finetune("max_epochs=abc"), ["max_epochs='abc'", "expected a number"]),
    ("max-epochs-fraction", finetune("max_epochs=1.5"), ["max_epochs=1.5", "positive integer"]),
    ("num-classes-one", finetune("num_classes=1"), ["num_classes=1", "integer >= 2"]),
    # ---- command-line counts
    ("sweep-max-retry", sweep("--n-trials", "1", "--max-retry", "-1"), ["--max-retry", "-1"]),
    ("sweep-n-trials", sweep("--n-trials", "0"), ["--n-trials", "0 is not a positive integer"]),
    ("sweep-heartbeat", sweep("--n-trials", "1", "--heartbeat", "-5"), ["--heartbeat", "-5"]),
    ("grid-seeds", lambda w: ["ablation", "steps", "--seeds", "0"], ["--seeds", "0 is not"]),
    # ---- lengths beyond the backbone's context (1,024 tokens of up to 6 bp)
    (
        "bp-beyond-context",
        sample("--bp", "100000"),
        ["runs/e/r", "sample.bp=100000", "at least 16667 tokens", "context of 1024 tokens"],
    ),
    (
        "bp-just-beyond-context",
        sample("--bp", "6140"),  # <cls> + 1,023 six-mers + 2 single bases
        ["runs/e/r", "sample.bp=6140", "needs 1026 tokens", "context of 1024 tokens"],
    ),
    (
        "bp-new-out-folder",
        sample("--bp", "100000", "--out", "{root}/fresh/s.fa"),
        ["sample.bp=100000", "tokens"],
    ),
    # ---- devices this machine lacks (the test hides any GPU)
    (
        "accelerator-gpu",
        train_with("trainer.accelerator=gpu"),
        ["trainer.accelerator='gpu'", "no gpu device", "it has: cpu"],
    ),
    ("accelerator-mps", train_with("trainer.accelerator=mps"), ["'mps'", "no mps device"]),
    (
        "accelerator-unknown",
        train_with("trainer.accelerator=quantum"),
        ["trainer.accelerator='quantum'", "expected one of", "cpu", "gpu"],
    ),
    (
        "finetune-accelerator",
        finetune("trainer.accelerator=cuda"),
        ["trainer.accelerator='cuda'", "no cuda device", "it has: cpu"],
    ),
    (
        "sample-device-cuda",
        sample("sample.device=cuda"),
        ["sample.device='cuda'", "no cuda device", "it has: cpu"],
    ),
    ("sample-device-mps", sample("sample.device=mps"), ["sample.device='mps'", "no mps device"]),
    # ---- evaluation: a wrong train split is named; a failed run leaves no --out folder
    (
        "evaluate-train-split",
        evaluate("samples.fa", "--train-split", "training"),
        ["'training'", "--train-split", "splits: test, train, valid"],
    ),
    (
        "evaluate-fails-leaves-no-out",
        evaluate("samples_x.fa", "--out", "{root}/fresh/deeper"),
        ["samples_x.fa", "'g15'", "'X'"],
    ),
    (
        "evaluate-split-leaves-no-out",
        evaluate("samples.fa", "--split", "holdout", "--out", "{root}/fresh"),
        ["'holdout'", "splits:"],
    ),
]


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine as one without CUDA or MPS, whatever it has."""
    for accelerator in (CUDAAccelerator, MPSAccelerator):
        monkeypatch.setattr(accelerator, "is_available", staticmethod(lambda: False))


@pytest.mark.slow
@pytest.mark.parametrize(("argv", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_parameter_is_a_clear_error(
    world: World,
    argv: Callable[[World], list[str]],
    expected: list[str],
    capsys: pytest.CaptureFixture[str],
    no_gpu: None,
) -> None:
    shutil.rmtree(world.root / "runs" / "x", ignore_errors=True)  # left by an earlier failure
    before = snapshot(world.root)
    message, err = clear_error(argv(world), capsys)
    assert all(e in message for e in expected), err
    assert snapshot(world.root) == before  # inputs untouched, nothing cached or begun


def test_there_are_twenty_five_distinct_cases() -> None:
    assert len({c[0] for c in CASES}) == len(CASES) >= 25


# -- the declaration mechanism --------------------------------------------------------------------


def _plugin(
    n: PositiveInt = 1,
    seed: Seed = 0,
    width: PositiveInt | None = None,
    odd: Annotated[int, Range(lambda v: v % 2 == 1, "odd")] = 1,
    rate: float = 0.5,
    flag: bool = True,
    path: str | Path = ".",
) -> None:
    """A plugin factory declaring its parameters as the built-in plugins do."""


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"n": 1, "seed": 2**32 - 1, "width": None, "odd": 3, "rate": 2, "flag": False}, None),
        ({"path": 5, "undeclared": "anything"}, None),  # not a number or flag: not checked
        ({"n": 0}, "n=0: must be >= 1"),
        ({"n": True}, "n=True: expected an integer"),
        ({"n": "3"}, "n='3': expected an integer"),
        ({"seed": 2**32}, f"seed={2**32}: must be an integer in [0, 2**32)"),
        ({"width": 0}, "width=0: must be >= 1"),
        ({"width": "wide"}, "width='wide': expected an integer or null"),
        ({"odd": 4}, "odd=4: must be odd"),
        ({"rate": "fast"}, "rate='fast': expected a number"),
        ({"flag": "yes"}, "flag='yes': expected true or false"),
    ],
)
def test_declared_types_and_ranges_are_checked(params: dict, problem: str | None) -> None:
    assert check_values(_plugin, params) == problem
    assert check_values(functools.partial(_plugin, n=2), params) == problem  # presets


def test_a_machine_with_a_gpu_passes_and_is_described(monkeypatch: pytest.MonkeyPatch) -> None:
    """The good twin of the device cases, on an emulated two-GPU CUDA machine."""
    monkeypatch.setattr(CUDAAccelerator, "is_available", staticmethod(lambda: True))
    monkeypatch.setattr(CUDAAccelerator, "auto_device_count", staticmethod(lambda: 2))
    monkeypatch.setattr(MPSAccelerator, "is_available", staticmethod(lambda: False))
    for name in ("auto", "cpu", "gpu", "cuda"):
        check_accelerator("trainer.accelerator", name)
    assert present() == "cpu, cuda (2 devices)"
    with pytest.raises(
        D3lmError, match=r"'mps': this machine has no mps device \(it has: cpu, cuda"
    ):
        check_accelerator("trainer.accelerator", "mps")


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
