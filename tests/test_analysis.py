"""Analysis notebooks: executed on made results, every grid point and reference row in the table,
golden mean ± std and bold choices."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from d3lm.ablation import load_grid

ANALYSIS = Path(__file__).parents[1] / "analysis"
NOTEBOOKS = ["tokenization", "schedule", "sampling", "steps", "temperature", "main"]
METRICS = ["val_bpn", "fd_kmer", "fd_oracle", "js_k6", "gc_ratio_gc_at", "gc_ratio_g_c"]
METRICS += ["cpg_oe", "fraction_unique", "mean_hamming", "nearest_mean", "fraction_copies"]
REFERENCES = ["real", "markov", "shuffle", "uniform"]


def made_results(grid_name: str, seeds: int = 2) -> pd.DataFrame:
    """Rows shaped like ``d3lm ablation`` output for every point of a shipped grid."""
    grid = load_grid(grid_name, seeds)
    axes = [a.name for a in [*grid.train, *grid.sample]]
    rng = np.random.default_rng(0)
    rows = []
    for train, seed in grid.train_points():
        for sp in grid.sample_points():
            labels = {**train.labels, **sp.labels}
            for metric in METRICS:
                rows.append(
                    {
                        "point": f"{train.name}-s{seed}/{sp.name}",
                        "set": "generated",
                        **labels,
                        "seed": seed,
                        "metric": metric,
                        "value": rng.random(),
                    }
                )
        for name in REFERENCES:
            for metric in METRICS[1:]:
                rows.append(
                    {
                        "point": f"reference-s{seed}",
                        "set": name,
                        **dict.fromkeys(axes),
                        "seed": seed,
                        "metric": metric,
                        "value": rng.random(),
                    }
                )
    return pd.DataFrame(rows)


@pytest.fixture
def analysis_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("D3LM_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("D3LM_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setenv("SCALE", "micro")
    monkeypatch.syspath_prepend(str(ANALYSIS))
    (tmp_path / "results").mkdir()
    return tmp_path


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_tables_carry_every_point(analysis_env: Path, name: str) -> None:
    rows = made_results(name)
    rows.to_csv(analysis_env / "results" / f"ablation-{name}-micro.csv", index=False)
    runpy.run_path(str(ANALYSIS / f"{name}.py"), run_name="__main__")
    reports = analysis_env / "reports" / "micro"
    md = (reports / f"{name}.md").read_text()
    table_lines = [line for line in md.splitlines() if line.startswith("|")][2:]
    first_cells = [line.split(" | ")[0].removeprefix("| ") for line in table_lines]
    labels = list(dict.fromkeys(rows.loc[rows["set"] == "generated"].iloc[:, 2].astype(str)))
    assert first_cells == [
        *labels,
        "real DNA (held out)",
        "order-5 Markov",
        "dinucleotide shuffle",
        "uniform random",
    ]
    assert "±" in md and "**" in md
    tex = (reports / f"{name}.tex").read_text()
    assert "\\begin{tabular}" in tex and "$\\pm$" in tex and "\\textbf{" in tex
    for path in reports.glob(f"{name}*.png"):
        assert path.read_bytes()[:4] == b"\x89PNG"
        assert path.with_suffix(".pdf").read_bytes()[:4] == b"%PDF"
    assert list(reports.glob(f"{name}*.png"))


def test_summary_golden_values_and_bold(analysis_env: Path) -> None:
    import tables

    made = [
        ("a", "generated", 0, "fd_kmer", 1.0),
        ("a", "generated", 1, "fd_kmer", 3.0),
        ("b", "generated", 0, "fd_kmer", 0.5),
        ("b", "generated", 1, "fd_kmer", 1.5),
        ("a", "generated", 0, "gc_ratio_gc_at", 1.0),
        ("a", "generated", 1, "gc_ratio_gc_at", 1.0),
        ("b", "generated", 0, "gc_ratio_gc_at", 2.0),
        ("b", "generated", 1, "gc_ratio_gc_at", 2.0),
        (None, "real", 0, "fd_kmer", 0.1),
        (None, "real", 1, "fd_kmer", 0.1),
        (None, "real", 0, "gc_ratio_gc_at", 1.9),
        (None, "real", 1, "gc_ratio_gc_at", 2.1),
    ]
    rows = pd.DataFrame(made, columns=["steps", "set", "seed", "metric", "value"])
    summary = tables.summarise(rows, ["steps"], ["fd_kmer", "gc_ratio_gc_at"])
    fd = summary[summary["metric"] == "fd_kmer"].set_index("row")
    assert fd.loc["a", "mean"] == 2.0 and fd.loc["a", "std"] == pytest.approx(np.sqrt(2))
    assert fd.loc["a", "count"] == 2
    assert tables.best_rows(summary) == {"fd_kmer": {"b"}, "gc_ratio_gc_at": {"b"}}
    tie = rows.assign(value=rows["value"].where(rows["metric"] != "fd_kmer", 1.0))
    tied = tables.best_rows(tables.summarise(tie, ["steps"], ["fd_kmer"]))
    assert tied == {"fd_kmer": {"a", "b"}}
    table = tables.format_table(summary, ["fd_kmer", "gc_ratio_gc_at"], "steps")
    assert table.loc["b", "FD k-mer"] == "**1 ± 0.71**"
    assert table.loc["a", "FD k-mer"] == "2 ± 1.4"
    assert table.loc["real DNA (held out)", "GC ratio (G+C)/(A+T)"] == "2 ± 0.14"
    assert list(table.index) == ["a", "b", "real DNA (held out)"]


def test_results_come_back_in_grid_order(analysis_env: Path) -> None:
    """Shards finish in any order: the table follows the grid file, not the results file."""
    import tables

    made = made_results("tokenization", seeds=1).iloc[::-1]
    made.to_csv(analysis_env / "results" / "ablation-tokenization-micro.csv", index=False)
    rows = tables.load_results("tokenization", ["tokenizer"])
    generated = rows.loc[rows["set"] == "generated", "tokenizer"]
    grid = [s.label for s in load_grid("tokenization").train[0].settings]
    assert list(dict.fromkeys(generated)) == grid


def test_missing_results_name_the_file_and_command(analysis_env: Path) -> None:
    import tables

    with pytest.raises(FileNotFoundError, match=r"ablation-steps-micro\.csv.*d3lm ablation steps"):
        tables.load_results("steps", ["steps"])


def test_notebook_runs_headless_as_a_script(analysis_env: Path) -> None:
    made_results("steps").to_csv(analysis_env / "results" / "ablation-steps-micro.csv", index=False)
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "DISPLAY")}
    subprocess.run(
        [sys.executable, str(ANALYSIS / "steps.py")],
        check=True,
        env=env,
        capture_output=True,
        cwd=analysis_env,
    )
    assert (analysis_env / "reports" / "micro" / "steps.pdf").exists()
