"""Parameters, devices and splits a user gets wrong, through the CLI, in the style of
``test_bad_inputs.py``: exit code 2, a one-line message naming the key, value or file and the
reason, no traceback, and every file under the test's folder as it was (no empty dataset cached,
no run, sample or result folder begun). The checks behind the table, called directly, are in
``test_param_checks.py``; its good twins on splits in ``test_valid_split.py``."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from badinput import RANDOM_INIT, clear_error, labelled, snapshot, write_fasta
from conftest import markov_sequences
from lightning.pytorch.accelerators import CUDAAccelerator, MPSAccelerator

from d3lm.cli import main


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
    # ---- labels and guidance (classifier-free): a conditional run's only
    ("sample-guidance", sample("guidance=-1"), ["sample.guidance=-1", "finite number >= 0"]),
    ("sample-label-unconditional", sample("--label", "a"), ["--label", "conditioning: none"]),
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
