import json

import numpy as np
import pandas as pd
import pytest

from d3lm.data.fasta import write_fasta
from d3lm.evaluate import EvaluateOptions, evaluate_fasta, metric_table
from d3lm.metrics.motifs import MotifScanner


def random_table(n: int, length: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # GC-poor "real" DNA with a planted TATA box: far from uniform, close to its own halves
    bases = rng.choice(list("ACGT"), p=[0.35, 0.15, 0.15, 0.35], size=(n, length))
    bases[:, 20:28] = list("TATAAAAG")
    splits = np.array(["train", "test"])[(np.arange(n) % 3 == 0).astype(int)]
    return pd.DataFrame({"sequence": ["".join(row) for row in bases], "split": splits})


def test_evaluate_fasta_writes_metrics_and_orders_rows(tmp_path):
    table = random_table(600, 60, seed=0)
    table.to_parquet(tmp_path / "real.parquet")
    samples = random_table(80, 60, seed=1)["sequence"]
    write_fasta(tmp_path / "gen.fa", ((f"s{i}", s) for i, s in enumerate(samples)))
    options = EvaluateOptions(features={"kmer": {"ks": [1, 2, 3]}}, motifs=False)
    rows = evaluate_fasta(
        tmp_path / "gen.fa",
        str(tmp_path / "real.parquet"),
        tmp_path / "out",
        tmp_path / "cache",
        options,
    )
    assert list(rows.columns) == ["run", "metric", "value"]
    assert list(rows["run"].unique()) == ["gen", "real", "uniform", "shuffle", "markov"]
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    table = metric_table(rows)
    assert saved["gen"]["fd_kmer"] == pytest.approx(table.loc["gen", "fd_kmer"])
    assert pd.read_csv(tmp_path / "out" / "metrics.csv").shape == rows.shape
    assert table.loc["real", "fd_kmer"] < table.loc["uniform", "fd_kmer"]
    assert table.loc["real", "js_k3"] < table.loc["uniform", "js_k3"]
    assert table.loc["gen", "fraction_copies"] == 0 and table.loc["gen", "nearest_mean"] > 0
    assert {"gc_ratio_gc_at", "gc_ratio_g_c", "cpg_oe", "mean_edit", "js_k1"} <= set(table.columns)


def test_evaluate_names_missing_split(tmp_path):
    table = random_table(30, 40, seed=0).assign(split="train")
    table.to_parquet(tmp_path / "real.parquet")
    write_fasta(tmp_path / "gen.fa", [("a", "ACGT" * 5)])
    with pytest.raises(ValueError, match=r"real\.parquet.*split 'test'"):
        evaluate_fasta(
            tmp_path / "gen.fa",
            str(tmp_path / "real.parquet"),
            tmp_path,
            tmp_path,
            EvaluateOptions(features={}, motifs=False),
        )


@pytest.mark.slow
def test_jaspar_motifs_scan_both_strands():
    scanner = MotifScanner()
    assert len(scanner.motifs) > 800  # JASPAR 2024 CORE vertebrates, latest versions
    ctcf = next(i for i, m in enumerate(scanner.motifs) if m.name == "CTCF")
    forward = scanner.counts(["T" * 20 + "CCACCAGGGGGCGC" + "T" * 20])
    reverse = scanner.counts(["T" * 20 + "GCGCCCCCTGGTGG" + "T" * 20])
    assert forward[ctcf] >= 1 and reverse[ctcf] >= 1
