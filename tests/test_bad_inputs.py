"""Bad input through the CLI, as a new user gives it: each case must end with exit code 2 and a
message that names the file, record or key and the reason; no traceback; the inputs untouched and
nothing half-written (every file under the test's folder is the same before and after)."""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from badinput import clear_error, snapshot, write_fasta
from conftest import markov_sequences

from d3lm.cli import main
from d3lm.data.fasta import read_fasta


@dataclass(frozen=True)
class World:
    root: Path
    table: Path  #: a good parquet (60-bp records, train/valid/test)
    run: Path  #: a trained micro run

    def p(self, name: str) -> str:
        return str(self.root / name)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, dna_table: Path, one_thread) -> World:
    root = tmp_path_factory.mktemp("bad")
    seqs = markov_sequences(40, 60, seed=3)
    good = [(f"s{i}", s) for i, s in enumerate(seqs)]
    (root / "folder").mkdir()
    (root / "empty.fa").write_text("")
    (root / "binary.fa").write_bytes(bytes(range(256)) * 8)
    with gzip.open(root / "full.fa.gz", "wt") as handle:
        handle.write("".join(f">{n}\n{s}\n" for n, s in good))
    data = (root / "full.fa.gz").read_bytes()
    (root / "truncated.fa.gz").write_bytes(data[: len(data) // 2])
    (root / "full.fa.gz").unlink()
    pd.DataFrame({"name": ["a", "b", "c"], "sequence": ["ACGT" * 15, None, "ACGT" * 15]}).to_csv(
        root / "empty_cell.csv", index=False
    )
    pd.DataFrame({"name": ["a"], "seq": ["ACGT"]}).to_csv(root / "no_column.csv", index=False)
    write_fasta(root / "x.fa", [*good[:5], ("bad", "ACGTX" + "A" * 55), *good[5:]])
    write_fasta(root / "same_names.fa", [("r", s) for _, s in good])
    write_fasta(root / "all_n.fa", [*good, ("gap", "N" * 60)])
    (root / "broken.yaml").write_text("trainer: {max_steps: [1, 2\n")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "grid_bad_task.yaml").write_text("finetune: {tasks: {no_such_task: {}}}\n")
    (root / "a_file").write_text("not a folder\n")
    write_fasta(root / "samples.fa", good[:16])
    write_fasta(root / "samples_x.fa", [*good[:15], ("g15", "ACGTX" + "A" * 55)])
    write_fasta(root / "samples_digits.fa", [*good[:15], ("g15", "ACGT1" + "A" * 55)])
    write_fasta(root / "samples_star.fa", [*good[:15], ("g15", "ACGT*" + "A" * 55)])
    write_fasta(root / "samples_short.fa", [(n, s[:50]) for n, s in good[:16]])
    write_fasta(root / "samples_mixed.fa", [*good[:15], ("g15", "ACGT" * 10)])
    argv = [
        "train",
        "--scale",
        "micro",
        f"data.dataset={dna_table}",
        f"runs_dir={root / 'runs'}",
        "experiment=e",
        "run=r",
        "trainer.max_steps=2",
    ]
    assert main(argv) == 0
    run = root / "runs" / "e" / "r"
    write_fasta(root / "few.fa", good[:3])
    ckpt = (run / "checkpoints" / "last.ckpt").read_bytes()
    for name, data in (
        ("truncated", ckpt[: len(ckpt) // 2]),
        ("empty", b""),
        ("random", bytes(range(256)) * 64),
    ):
        broken = root / "broken" / name
        shutil.copytree(run, broken)
        (broken / "checkpoints" / "last.ckpt").write_bytes(data)
    return World(root, dna_table, run)


def train(w: World, *extra: str) -> list[str]:
    return ["train", "--scale", "micro", f"runs_dir={w.root / 'runs'}", "experiment=x", *extra]


def train_on(name: str, *extra: str) -> Callable[[World], list[str]]:
    return lambda w: train(w, f"data.dataset={w.p(name)}", *extra)


def train_with(*extra: str) -> Callable[[World], list[str]]:
    return lambda w: train(w, f"data.dataset={w.table}", *extra)


def sample(*extra: str) -> Callable[[World], list[str]]:
    return lambda w: ["sample", str(w.run), *[e.format(root=w.root) for e in extra]]


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


#: (case id, argv builder, substrings the message must hold)
CASES: list[tuple[str, Callable[[World], list[str]], list[str]]] = [
    # ---- training data
    ("data-missing", train_on("nope.fa"), ["nope.fa", "neither a file nor a known dataset"]),
    ("data-folder", train_on("folder"), ["folder", "is a directory"]),
    ("data-empty", train_on("empty.fa"), ["empty.fa", "empty file"]),
    ("data-binary", train_on("binary.fa"), ["binary.fa", "unreadable"]),
    ("data-truncated-gz", train_on("truncated.fa.gz"), ["truncated.fa.gz", "unreadable"]),
    ("data-empty-cell", train_on("empty_cell.csv"), ["empty_cell.csv", "'b'", "empty sequence"]),
    ("data-no-column", train_on("no_column.csv"), ["no_column.csv", "no 'sequence' column"]),
    ("data-bad-char", train_on("x.fa"), ["x.fa", "'bad'", "invalid character 'X'"]),
    ("data-same-names", train_on("same_names.fa"), ["same_names.fa", "'r'", "unique"]),
    ("data-all-n", train_on("all_n.fa"), ["all_n.fa", "'gap'", "only N"]),
    ("data-unknown-format", train_on("a_file"), ["a_file", "unknown table format"]),
    ("valid-fraction", train_with("data.valid_fraction=-0.5"), ["data.valid_fraction", "[0, 1)"]),
    (
        "fractions-sum",
        train_with("data.valid_fraction=0.5", "data.test_fraction=0.5"),
        ["data.test_fraction", "nothing is left"],
    ),
    ("data-too-few", train_on("few.fa"), ["few.fa", "one batch"]),
    # ---- config
    ("max-steps-zero", train_with("trainer.max_steps=0"), ["trainer.max_steps=0", ">= 1"]),
    ("lr-zero", train_with("optim.lr=0"), ["optim.lr=0", "> 0"]),
    ("max-steps-text", train_with("trainer.max_steps=abc"), ["trainer.max_steps", "integer"]),
    ("max-steps-float", train_with("trainer.max_steps=2.5"), ["trainer.max_steps", "integer"]),
    ("lr-text", train_with("optim.lr=fast"), ["optim.lr", "number"]),
    ("flag-text", train_with("trainer.enable_progress_bar=maybe"), ["enable_progress_bar"]),
    ("unknown-key", train_with("trainer.max_stepz=5"), ["max_stepz", "base.yaml"]),
    ("override-no-key", train_with("=5"), ["'=5'", "key=value"]),
    ("unknown-tokenizer", train_with("tokenizer.name=nope"), ["tokenizer 'nope'", "kmer"]),
    (
        "unknown-tokenizer-param",
        train_with("tokenizer.params.kk=3"),
        ["tokenizer 'nt6mer'", "kk", "accepts"],
    ),
    ("bad-kmer-k", train_with("tokenizer.name=kmer", "tokenizer.params.k=9"), ["kmer", "k must"]),
    ("unknown-schedule", train_with("diffusion.schedule.name=zigzag"), ["schedule 'zigzag'"]),
    (
        "bad-schedule-param",
        train_with("diffusion.schedule.name=polynomial", "diffusion.schedule.params.p=-1"),
        ["polynomial", "positive"],
    ),
    ("unknown-objective", train_with("diffusion.objective.name=gan"), ["objective 'gan'"]),
    ("unknown-preset", train_with("model.preset=huge"), ["backbone 'huge'"]),
    ("bad-heads", train_with("model.params.heads=7"), ["backbone 'micro'", "divisible"]),
    ("config-missing", lambda w: [*train(w), "--config", w.p("nope.yaml")], ["nope.yaml"]),
    (
        "config-bad-yaml",
        lambda w: [*train(w), "--config", w.p("broken.yaml")],
        ["broken.yaml", "not a valid YAML"],
    ),
    ("config-list", lambda w: [*train(w), "--config", w.p("list.yaml")], ["list.yaml", "mapping"]),
    ("unknown-scale", lambda w: ["train", "--scale", "gigantic"], ["gigantic", "known scales"]),
    ("resume-missing", lambda w: ["train", f"resume={w.p('nope')}"], ["nope", "not a run folder"]),
    # ---- sampling
    ("sample-n-negative", sample("--n", "-5"), ["--n", "-5"]),
    ("sample-n-zero", sample("--n", "0"), ["--n", "0 is not a positive integer"]),
    ("sample-n-text", sample("--n", "many"), ["--n", "'many'"]),
    ("sample-bp-zero", sample("--bp", "0"), ["--bp"]),
    ("sample-n-dotted", sample("sample.n=0"), ["sample.n", "positive"]),
    ("sample-out-folder", sample("--out", "{root}/folder"), ["folder", "is a directory"]),
    ("sample-out-under-file", sample("--out", "{root}/a_file/s.fa"), ["a_file", "cannot write"]),
    ("sample-run-missing", lambda w: ["sample", w.p("nope")], ["nope", "not a run folder"]),
    ("ckpt-truncated", lambda w: ["sample", w.p("broken/truncated")], ["last.ckpt", "truncated"]),
    ("ckpt-empty", lambda w: ["sample", w.p("broken/empty")], ["last.ckpt", "empty file"]),
    ("ckpt-random", lambda w: ["sample", w.p("broken/random")], ["last.ckpt", "not a checkpoint"]),
    (
        "resume-truncated",
        lambda w: ["train", f"resume={w.p('broken/truncated')}", "trainer.max_steps=4"],
        ["last.ckpt", "truncated"],
    ),
    ("sample-unknown-preset", sample("--sampler", "nope"), ["sampler 'nope'", "random"]),
    ("sample-unknown-order", sample("order=sideways"), ["unmask_order 'sideways'"]),
    ("sample-unknown-param", sample("stepz=10"), ["stepz", "accepts"]),
    ("sample-zero-steps", sample("steps=0"), ["sampler 'random'", "steps >= 1"]),
    ("sample-text-steps", sample("steps=abc"), ["sampler 'random'"]),
    ("sample-cold", sample("temperature=-1"), ["sampler 'random'", "temperature > 0"]),
    ("sample-order-param", sample("order_params.noise=1"), ["unmask_order 'random'", "noise"]),
    # ---- evaluation
    ("eval-missing", evaluate("nope.fa"), ["nope.fa", "no such FASTA file"]),
    ("eval-empty", evaluate("empty.fa"), ["empty.fa", "no sequences"]),
    ("eval-x", evaluate("samples_x.fa"), ["samples_x.fa", "'g15'", "'X'"]),
    ("eval-digit", evaluate("samples_digits.fa"), ["samples_digits.fa", "'g15'", "'1'"]),
    ("eval-star", evaluate("samples_star.fa"), ["samples_star.fa", "'*'"]),
    ("eval-length", evaluate("samples_short.fa"), ["50 bp", "60 bp", "--allow-lengths"]),
    ("eval-mixed", evaluate("samples_mixed.fa"), ["samples_mixed.fa", "'g15'", "40 bp"]),
    ("eval-split", evaluate("samples.fa", "--split", "holdout"), ["'holdout'", "splits:"]),
    ("eval-feature", evaluate("samples.fa", "--features", "nope"), ["feature_extractor 'nope'"]),
    (
        "eval-feature-param",
        evaluate("samples.fa", "--feature-param", "kmer"),
        ["'kmer'", "NAME.KEY=VALUE"],
    ),
    ("eval-baseline", evaluate("samples.fa", "--baselines", "oracle"), ["generator 'oracle'"]),
    ("eval-out", evaluate("samples.fa", "--out", "{root}/a_file"), ["a_file", "cannot write"]),
    (
        "eval-reference",
        lambda w: ["evaluate", "--samples", w.p("samples.fa"), "--reference", "nowhere"],
        ["nowhere", "neither a file nor a known dataset"],
    ),
    # ---- grids and data recipes
    ("grid-missing", lambda w: ["ablation", "nope", "--dry-run"], ["nope", "known grids"]),
    ("grid-shard", lambda w: ["ablation", "steps", "--shard", "3/2"], ["--shard", "3/2"]),
    ("dataset-unknown", lambda w: ["data", "prepare", "nope"], ["dataset 'nope'", "dhs"]),
    (
        "dataset-param-misspelt",
        lambda w: ["data", "prepare", "chromosomes", "lenght=200"],
        ["dataset 'chromosomes'", "'lenght'", "length"],
    ),
    (
        "task-param-not-key-value",
        lambda w: ["data", "prepare", "promoter", "length"],
        ["'length'", "key=value", "promoter"],
    ),
    (
        "understanding-unknown-task",
        lambda w: ["understanding", w.p("grid_bad_task.yaml")],
        ["grid_bad_task.yaml", "no_such_task"],
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("argv", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_error(
    world: World,
    argv: Callable[[World], list[str]],
    expected: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    shutil.rmtree(world.root / "runs" / "x", ignore_errors=True)  # left by an earlier failure
    before = snapshot(world.root)
    message, err = clear_error(argv(world), capsys)
    assert all(e in message for e in expected), err
    assert snapshot(world.root) == before  # inputs untouched, nothing half-written


def test_there_are_forty_distinct_cases() -> None:
    assert len({c[0] for c in CASES}) == len(CASES) >= 40


def test_debug_shows_the_traceback(world: World) -> None:
    with pytest.raises(ValueError, match="nope"):
        main(["--debug", "sample", world.p("nope")])


def test_nested_sampler_parameters_reach_the_sampler(world: World, tmp_path: Path) -> None:
    """The good twin of `sample-order-param`: an order that takes `noise` gets it."""
    out = tmp_path / "s.fa"
    argv = ["sample", str(world.run), "--sampler", "confidence", "order_params.noise=0.5"]
    assert main([*argv, "--n", "2", "--out", str(out)]) == 0
    assert len(list(read_fasta(out))) == 2
