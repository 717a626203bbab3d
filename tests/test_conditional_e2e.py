"""A conditional run end to end through the ``d3lm`` command: train a micro model with
``conditioning: label``, sample it by label (with and without guidance, in one process and in
two), and score the labelled samples with an oracle of the same classes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import micro_config

from d3lm.cli import main
from d3lm.data.fasta import read_fasta_described
from d3lm.oracle.train import OracleConfig, train_oracle
from d3lm.stages.checkpoints import load_model
from d3lm.stages.train import train


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def run(dna_table: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("conditional")
    cfg = micro_config(
        dna_table,
        root,
        "experiment=e",
        "run=c",
        "conditioning.name=label",
        "trainer.max_steps=3",
        "trainer.precision=32-true",
    )
    return train(cfg)


def sample(run: Path, out: Path, *args: str) -> list[tuple[str, str, str]]:
    argv = ["sample", str(run), "--out", str(out), "--n", "8", "--bp", "60",
            "sample.batch_size=3", "sample.progress=false", "steps=6", *args]  # fmt: skip
    assert main(argv) == 0
    return list(read_fasta_described(out))


def test_train_sample_by_label_and_score(run: Path, dna_table: Path, tmp_path: Path) -> None:
    model = load_model(run)
    assert model.conditioning.classes == ("a", "b")  # fitted from the table, kept in the run

    one = sample(run, tmp_path / "one.fa", "--label", "all", "guidance=2", "--workers", "1")
    two = sample(run, tmp_path / "two.fa", "--label", "all", "guidance=2", "--workers", "2")
    assert one == two  # labels per sequence index: worker processes draw the same
    assert [d for _, d, _ in one] == ["label=a"] * 4 + ["label=b"] * 4
    assert all(len(s) == 60 for *_, s in one)
    unguided = sample(run, tmp_path / "w0.fa", "--label", "all", "--workers", "1")
    assert [s for *_, s in unguided] != [s for *_, s in one]  # guidance changes the draws
    by_b = sample(run, tmp_path / "b.fa", "--label", "b", "--workers", "1")
    # the condition token reaches the network: class b's draws differ from class a's
    assert [s for *_, s in by_b][4:] == [s for *_, s in unguided][4:]
    assert [s for *_, s in by_b][:4] != [s for *_, s in unguided][:4]

    oracle = train_oracle(
        dna_table, tmp_path / "cache", OracleConfig(channels=8, width=8, epochs=1, batch_size=64)
    )
    out = tmp_path / "scores"
    argv = ["evaluate", "--samples", str(tmp_path / "one.fa"), "--reference", str(dna_table),
            "--out", str(out), "--features", "oracle", "--feature-param",
            f"oracle.checkpoint={oracle}", "--baselines", "--no-motifs", "--no-progress",
            ]  # fmt: skip
    assert main(argv) == 0
    confusion = pd.read_csv(out / "confusion.csv")
    generated = confusion[confusion["set"] == "one"]
    assert generated.groupby("intended")[["a", "b"]].sum().sum(axis=1).to_dict() == {"a": 4, "b": 4}
    rows = pd.read_csv(out / "metrics.csv")
    metrics = set(rows.loc[rows["run"] == "one", "metric"])
    assert {"accuracy_oracle", "accuracy_oracle.a", "accuracy_oracle.b"} <= metrics
