"""Bad input about where runs and outputs go, through the CLI as a user gives it: an output that is
one of the inputs (the same path, another spelling, a symlink or a hard link), a run folder that
another process holds, a run folder that holds another or a finished run. Each case must end
with exit code 2 and one line that names the file or folder and the reason, no traceback, the
inputs untouched and nothing half-written (every file under the test's folder, lock files
included, is the same before and after)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from badinput import clear_error, snapshot
from conftest import markov_sequences

from d3lm.cli import main

#: Holds the run folders named by its arguments until its stdin closes.
HOLDER = (
    "import contextlib, sys\n"
    "from d3lm import runlock\n"
    "with contextlib.ExitStack() as stack:\n"
    "    for folder in sys.argv[1:]:\n"
    "        stack.enter_context(runlock.hold(folder))\n"
    "    print('held', flush=True)\n"
    "    sys.stdin.read()\n"
)


@dataclass(frozen=True)
class World:
    root: Path
    table: Path  #: a good parquet (60-bp records, train/valid/test, labels a/b)
    run: Path  #: a trained micro run (2 steps)
    tuned: Path  #: a fine-tuned micro run
    holder: int  #: the pid of the process holding the runs/*/locked folders

    def p(self, name: str) -> str:
        return str(self.root / name)


def _fasta(path: Path, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    seqs = markov_sequences(n, 60, seed=5)
    path.write_text("".join(f">s{i}\n{s}\n" for i, s in enumerate(seqs)))


def _train(root: Path, table: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--scale",
        "micro",
        f"data.dataset={table}",
        f"runs_dir={root / 'runs'}",
        f"cache_dir={root / 'cache'}",
        "experiment=e",
        "trainer.max_steps=2",
        *extra,
    ]


def _finetune(root: Path, table: Path, *extra: str) -> list[str]:
    return [
        "finetune",
        f"task={table}",
        f"runs_dir={root / 'runs'}",
        f"results_dir={root / 'results'}",
        f"cache_dir={root / 'cache'}",
        "experiment=ft",
        "model.preset=micro",
        "tokenizer.name=kmer",
        "tokenizer.params.k=3",
        "batch_size=16",
        "max_steps=2",
        "val_check_interval=1",
        *extra,
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, dna_table: Path, one_thread) -> Iterator[World]:
    root = tmp_path_factory.mktemp("bad-runs")
    assert main(_train(root, dna_table, "run=r")) == 0
    run = root / "runs" / "e" / "r"
    shutil.copytree(run, root / "runs" / "e" / "r2")  # the same settings under another name
    assert main(_finetune(root, dna_table)) == 0
    tuned = root / "runs" / "ft" / "fixture-random-seed0"
    assert main(["export-nt", str(run), "--out", str(root / "hf")]) == 0
    _fasta(root / "d.fa", 4)
    (root / "sub").mkdir()
    (root / "link.fa").symlink_to(root / "d.fa")
    os.link(root / "d.fa", root / "hard.fa")
    (root / "config_link.yaml").symlink_to(run / "config.yaml")
    _fasta(root / "s.fa", 16)
    _fasta(root / "m" / "metrics.json", 16)  # samples that evaluate --out m would overwrite
    shutil.copy(dna_table, root / "m2.parquet")
    (root / "grid.yaml").write_text("experiment: g\nseeds: [0]\n")
    locked = [root / "runs" / "e" / "locked", root / "runs" / "ft" / "locked"]
    locked.append(root / "runs" / "g-micro" / "default-s0")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, *map(str, locked)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    try:
        yield World(root, dna_table, run, tuned, holder.pid)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()


def sample(*extra: str) -> Callable[[World], list[str]]:
    return lambda w: ["sample", str(w.run), *[e.format(root=w.root, run=w.run) for e in extra]]


def predict(out: str) -> Callable[[World], list[str]]:
    return lambda w: [
        "predict",
        str(w.tuned),
        "--data",
        w.p("d.fa"),
        "--out",
        out.format(root=w.root, tuned=w.tuned),
    ]


def evaluate(samples: str, out: str, reference: str | None = None) -> Callable[[World], list[str]]:
    return lambda w: [
        "evaluate",
        "--samples",
        w.p(samples),
        "--reference",
        w.p(reference) if reference else str(w.table),
        "--out",
        w.p(out),
        "--features",
        "kmer",
        "--no-motifs",
    ]


#: (case id, argv builder, substrings the message must hold)
CASES: list[tuple[str, Callable[[World], list[str]], list[str]]] = [
    # ---- outputs that would replace inputs
    ("predict-out-is-data", predict("{root}/d.fa"), ["--out", "d.fa", "is also --data"]),
    (
        "predict-out-spelt-otherwise",
        predict("{root}/sub/../d.fa"),
        ["sub/../d.fa", "is also --data"],
    ),
    ("predict-out-symlink", predict("{root}/link.fa"), ["link.fa", "is also --data"]),
    ("predict-out-hard-link", predict("{root}/hard.fa"), ["hard.fa", "is also --data"]),
    (
        "predict-out-is-checkpoint",
        predict("{tuned}/checkpoints/best.ckpt"),
        ["best.ckpt", "is also the checkpoint"],
    ),
    (
        "sample-out-is-checkpoint",
        sample("--out", "{run}/checkpoints/last.ckpt"),
        ["last.ckpt", "is also the checkpoint"],
    ),
    (
        "sample-out-links-to-config",
        sample("--out", "{root}/config_link.yaml"),
        ["config_link.yaml", "is also the config"],
    ),
    (
        "sample-trace-is-out",
        sample("--out", "{root}/new.fa", "--trace", "{root}/new.fa"),
        ["--trace", "new.fa", "is also --out"],
    ),
    (
        "sample-provenance-is-trace",
        sample("--out", "{root}/new.fa", "--trace", "{root}/new.json"),
        ["its provenance", "new.json", "is also --trace"],
    ),
    ("evaluate-out-is-samples", evaluate("s.fa", "s.fa"), ["--out", "s.fa", "--samples"]),
    (
        "evaluate-overwrites-samples",
        evaluate("m/metrics.json", "m"),
        ["m/metrics.json", "is also --samples"],
    ),
    (
        "evaluate-out-is-reference",
        evaluate("s.fa", "m2.parquet", "m2.parquet"),
        ["m2.parquet", "is also --reference"],
    ),
    (
        "export-out-is-checkpoint",
        lambda w: [
            "export-nt",
            f"{w.run}/checkpoints/last.ckpt",
            "--out",
            f"{w.run}/checkpoints/last.ckpt",
        ],
        ["last.ckpt", "is also the checkpoint"],
    ),
    (
        "export-out-is-run",
        lambda w: ["export-nt", str(w.run), "--out", f"{w.run}/"],
        ["runs/e/r", "is also the checkpoint"],
    ),
    (
        "import-out-is-input",
        lambda w: ["import-nt", w.p("hf"), "--out", w.p("hf")],
        ["hf", "is also the input folder"],
    ),
    # ---- run folders held by another process
    (
        "train-folder-held",
        lambda w: _train(w.root, w.table, "run=locked"),
        ["runs/e/locked", "in use by pid"],
    ),
    (
        "finetune-folder-held",
        lambda w: _finetune(w.root, w.table, "run=locked"),
        ["runs/ft/locked", "in use by pid"],
    ),
    (
        "ablation-point-held",
        lambda w: [
            "ablation",
            w.p("grid.yaml"),
            "--scale",
            "micro",
            f"data.dataset={w.table}",
            f"runs_dir={w.root / 'runs'}",
            f"cache_dir={w.root / 'cache'}",
        ],
        ["runs/g-micro/default-s0", "in use by pid"],
    ),
    # ---- run folders that hold another run
    (
        "train-over-a-finished-run",
        lambda w: _train(w.root, w.table, "run=r2"),
        ["runs/e/r2", "holds a run already (2 steps trained)", "resume="],
    ),
    (
        "train-over-other-settings",
        lambda w: _train(w.root, w.table, "run=r2", "trainer.max_steps=4"),
        ["runs/e/r2", "other settings (trainer.max_steps=2 there, 4 now)", "resume="],
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("argv", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_run_input_is_a_clear_error(
    world: World,
    argv: Callable[[World], list[str]],
    expected: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = snapshot(world.root)
    message, _ = clear_error(argv(world), capsys)
    assert all(e in message for e in expected), message
    if "in use by" in message:
        assert f"in use by pid {world.holder} on " in message
    assert snapshot(world.root) == before  # inputs untouched, nothing half-written


def test_there_are_at_least_ten_distinct_cases() -> None:
    assert len({c[0] for c in CASES}) == len(CASES) >= 10
