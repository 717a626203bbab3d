"""Design metrics of labelled samples: the oracle's accuracy per intended class, its confusion
matrix and interval against plain counting, the real row as the ceiling, unlabelled files
unchanged, and labels the oracle does not know refused with the file and record."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from d3lm.config import load_config
from d3lm.data.fasta import write_fasta
from d3lm.errors import D3lmError
from d3lm.evaluate import EvaluateOptions, evaluate_fasta, evaluate_samples, split_indices
from d3lm.metrics.features import FeatureExtractor, KmerFeatures, OracleFeatures
from d3lm.metrics.features.base import one_hot
from d3lm.metrics.frechet import frechet_distance
from d3lm.metrics.kernel import KidSpec, kernel_distance
from d3lm.oracle.train import OracleConfig, train_oracle
from d3lm.stages.score import Scorer

BASES = "ACGT"
CLASSES = tuple(f"c{b}" for b in BASES)
LENGTH = 24


class FirstBase(FeatureExtractor):
    """A classifier anyone can check by hand: a sequence is of class ``c<its first base>``."""

    classes = CLASSES
    dim = 8

    def __call__(self, seqs: Sequence[str]) -> torch.Tensor:
        x = one_hot(seqs)
        return torch.cat([x[:, :, 0], x[:, :, 1]], 1).double()

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return features[:, :4]


def random_dna(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list(BASES), LENGTH)) for _ in range(n)]


def options(**kw: object) -> EvaluateOptions:
    base = {"features": {}, "baselines": {}, "motifs": False, "progress": False}
    return EvaluateOptions(**(base | kw))  # type: ignore[arg-type]


def wide(rows: pd.DataFrame, run: str) -> dict[str, float]:
    picked = rows[rows["run"] == run]
    return dict(zip(picked["metric"], picked["value"], strict=True))


def wilson(hits: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval by its formula."""
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = hits / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return centre - half, centre + half


def test_accuracy_confusion_and_shares_match_counting(tmp_path: Path) -> None:
    samples = random_dna(90, seed=1)
    labels = [CLASSES[i % 4] for i in range(90)]  # an equal share each, as `sample.labels: [all]`
    reference = random_dna(200, seed=2)
    ref_labels = [f"c{s[0]}" for s in reference]
    confusion = tmp_path / "confusion.csv"
    rows = evaluate_samples(
        samples,
        reference,
        None,
        {"first": FirstBase()},
        options(),
        run="s",
        labels=labels,
        reference_labels=ref_labels,
        confusion=confusion,
    )
    got = wide(rows, "s")
    predicted = [f"c{s[0]}" for s in samples]
    hits = sum(p == t for p, t in zip(predicted, labels, strict=True))
    assert got["accuracy_first"] == pytest.approx(hits / 90)
    assert (got["accuracy_first_lo"], got["accuracy_first_hi"]) == pytest.approx(wilson(hits, 90))
    for c in CLASSES:
        meant = [p for p, t in zip(predicted, labels, strict=True) if t == c]
        assert got[f"accuracy_first.{c}"] == pytest.approx(meant.count(c) / len(meant))
        assert got[f"share_first.{c}"] == pytest.approx(predicted.count(c) / 90)
    matrix = pd.read_csv(confusion, index_col=[0, 1, 2])
    for t in CLASSES:
        for p in CLASSES:
            count = sum(a == p and b == t for a, b in zip(predicted, labels, strict=True))
            assert matrix.loc[("s", "first", t), p] == count
    # the real row, scored with its own labels, is the ceiling: this classifier is always right
    real = wide(rows, "real")
    assert real["accuracy_first"] == 1.0 and matrix.loc["real"].to_numpy().trace() == 90
    # per-class distances: a class's samples against the reference half's sequences of the class
    half, _ = split_indices(len(reference), 90, 0)
    features = FirstBase()
    ref_c = features([reference[i] for i in half if ref_labels[i] == "cG"])
    mine = features([s for s, t in zip(samples, labels, strict=True) if t == "cG"])
    assert got["fd_first.cG"] == pytest.approx(frechet_distance(mine, ref_c))
    spec = KidSpec()
    kid, _ = kernel_distance(ref_c, mine, spec.subsets, spec.subset_size, 0)
    assert got["kid_first.cG"] == pytest.approx(kid)


def labelled_table(n: int = 320, length: int = 40, seed: int = 0) -> pd.DataFrame:
    """Uniform DNA with its class's motif planted once (what the small oracle learns)."""
    motifs = ["TGACTCAT", "CCGGAAGT"]
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 2, n)
    seqs = []
    for k in classes:
        text = "".join(rng.choice(list(BASES), length))
        start = int(rng.integers(0, length - 8))
        seqs.append(text[:start] + motifs[k] + text[start + 8 :])
    splits = ["train"] * (n - 120) + ["valid"] * 40 + ["test"] * 80
    names = [f"r{i}" for i in range(n)]
    labels = [f"m{k}" for k in classes]
    return pd.DataFrame({"name": names, "sequence": seqs, "label": labels, "split": splits})


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, Path]:
    """(the data table, its frame, a small oracle trained on it)."""
    folder = tmp_path_factory.mktemp("design")
    table = labelled_table()
    path = folder / "cells.parquet"
    table.to_parquet(path, index=False)
    config = OracleConfig(channels=16, width=16, epochs=4, batch_size=32, lr=1e-2)
    return path, table, train_oracle(path, folder / "cache", config)


def held_out(table: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """The records the real row is drawn from (the test split's second half, as evaluated)."""
    test = table[table["split"] == "test"].reset_index(drop=True)
    return test.iloc[split_indices(len(test), n, seed)[1]]


def test_real_sequences_as_labelled_samples_score_the_ceiling(oracle, tmp_path: Path) -> None:
    data, table, checkpoint = oracle
    real = held_out(table, 40)
    samples = tmp_path / "real.fasta"
    write_fasta(
        samples, [(f"g/r/{i} label={r.label}", r.sequence) for i, r in enumerate(real.itertuples())]
    )
    opts = options(features={"oracle": {"checkpoint": str(checkpoint)}})
    rows = evaluate_fasta(samples, str(data), tmp_path / "out", tmp_path, opts)
    got, ceiling = wide(rows, samples.stem), wide(rows, "real")
    # by hand: the oracle's argmax on these sequences against their labels
    judge = OracleFeatures(checkpoint)
    predicted = judge.classify(judge(list(real["sequence"]))).argmax(1)
    truth = torch.tensor([judge.classes.index(label) for label in real["label"]])
    assert got["accuracy_oracle"] == pytest.approx(float((predicted == truth).double().mean()))
    for metric in [m for m in ceiling if m.startswith(("accuracy", "share", "fd_", "kid_"))]:
        assert got[metric] == pytest.approx(ceiling[metric]), metric
    matrix = pd.read_csv(tmp_path / "out" / "confusion.csv", index_col=[0, 1, 2])
    assert matrix.loc[samples.stem].equals(matrix.loc["real"])


def test_an_unlabelled_file_keeps_todays_rows(oracle, tmp_path: Path) -> None:
    data, table, checkpoint = oracle
    real = held_out(table, 40)
    samples = tmp_path / "plain.fasta"
    write_fasta(samples, [(f"g/r/{i}", seq) for i, seq in enumerate(real["sequence"])])
    kmer = options(features={"kmer": {}})
    rows = evaluate_fasta(samples, str(data), tmp_path / "kmer", tmp_path, kmer)
    test = table[table["split"] == "test"]["sequence"].tolist()
    train = table[table["split"] == "train"]["sequence"].tolist()
    extractors = {"kmer": KmerFeatures()}
    before = evaluate_samples(list(real["sequence"]), test, train, extractors, kmer, run="plain")
    pd.testing.assert_frame_equal(rows, before)
    with_oracle = options(features={"oracle": {"checkpoint": str(checkpoint)}})
    rows = evaluate_fasta(samples, str(data), tmp_path / "oracle", tmp_path, with_oracle)
    metrics = set(rows.loc[rows["run"] == "plain", "metric"])
    assert {"share_oracle.m0", "share_oracle.m1"} <= metrics
    assert not [m for m in metrics if "." in m and not m.startswith("share_oracle.")]
    assert not (tmp_path / "oracle" / "confusion.csv").exists()


def test_a_label_the_oracle_does_not_know_names_file_and_record(oracle, tmp_path: Path) -> None:
    data, table, checkpoint = oracle
    seqs = held_out(table, 4)["sequence"].tolist()
    samples = tmp_path / "odd.fasta"
    write_fasta(samples, [("a/b/0 label=m0", seqs[0]), ("a/b/1 label=HepG2", seqs[1])])
    opts = options(features={"oracle": {"checkpoint": str(checkpoint)}})
    with pytest.raises(
        D3lmError, match=r"odd\.fasta: record 'a/b/1': label 'HepG2' is not a class"
    ):
        evaluate_fasta(samples, str(data), tmp_path / "out", tmp_path, opts)
    assert not (tmp_path / "out").exists()
    write_fasta(samples, [("a/b/0 label=m0", seqs[0]), ("a/b/1", seqs[1])])
    with pytest.raises(
        D3lmError, match=r"record 'a/b/0' has a label= field, record 'a/b/1' has no"
    ):
        evaluate_fasta(samples, str(data), tmp_path / "out", tmp_path, opts)


def test_a_grid_point_of_labelled_samples_writes_its_confusion_beside_metrics(
    oracle, tmp_path: Path
) -> None:
    """The grid's scorer: labelled samples get the design rows and ``confusion.csv`` beside
    ``metrics.json``; the real row carries the ceiling at every point, labelled or not."""
    data, table, checkpoint = oracle
    real = held_out(table, 40)
    cfg = load_config(
        overrides=[
            f"data.dataset={data}",
            f"runs_dir={tmp_path / 'runs'}",
            f"cache_dir={tmp_path / 'cache'}",
            "evaluate.features=[oracle]",
            f"evaluate.params={{oracle: {{checkpoint: {checkpoint}}}}}",
            "evaluate.baselines=[uniform]",
            "evaluate.motifs=false",
            "evaluate.progress=false",
            "evaluate.kid.subsets=10",
            "sample.n=40",
            "sample.bp=40",
        ]
    )
    scorer = Scorer()
    point = tmp_path / "labelled"
    point.mkdir()
    records = [(f"g/r/{i} label={r.label}", r.sequence) for i, r in enumerate(real.itertuples())]
    write_fasta(point / "samples.fasta", records)
    scored = scorer(cfg, point / "samples.fasta", point / "metrics.json")
    assert "accuracy_oracle" in scored.sets["generated"] and (point / "confusion.csv").exists()
    assert scored.sets["real"]["accuracy_oracle"] == scored.sets["generated"]["accuracy_oracle"]
    assert "share_oracle.m0" in scored.sets["uniform"]
    plain = tmp_path / "plain"
    plain.mkdir()
    write_fasta(plain / "samples.fasta", [(f"g/r/{i}", s) for i, s in enumerate(real["sequence"])])
    again = scorer(cfg, plain / "samples.fasta", plain / "metrics.json")
    assert (
        "accuracy_oracle" not in again.sets["generated"] and not (plain / "confusion.csv").exists()
    )
    assert (
        again.sets["real"] == scored.sets["real"]
        and again.sets["uniform"] == scored.sets["uniform"]
    )
