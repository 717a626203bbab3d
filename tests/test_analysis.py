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

from d3lm.evaluate import Evaluator, build_extractors
from d3lm.experiments.ablation import GRIDS_DIR, load_grid
from d3lm.metrics.scores import score

ANALYSIS = Path(__file__).parents[1] / "analysis"
#: Every shipped grid has its notebook.
NOTEBOOKS = sorted(path.stem for path in GRIDS_DIR.glob("*.yaml"))
METRICS = ["val_bpn", "fd_kmer", "fd_oracle", "js_k6", "gc_ratio_gc_at", "gc_ratio_g_c"]
METRICS += ["cpg_oe", "fraction_unique", "mean_hamming", "nearest_mean", "fraction_copies", "nfe"]
METRICS += ["accuracy_oracle"]  # the guidance figure plots it
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
    tables = [block.splitlines() for block in md.split("\n\n") if block.startswith("|")]
    first_cells = [[line.split(" | ")[0].removeprefix("| ") for line in t[2:]] for t in tables]
    labels = list(dict.fromkeys(rows.loc[rows["set"] == "generated"].iloc[:, 2].astype(str)))
    assert first_cells[0] == [
        *labels,
        "real DNA (held out)",
        "order-5 Markov",
        "dinucleotide shuffle",
        "uniform random",
    ]
    assert " [" in md and "**" in md  # mean [interval] cells, the best mean in bold
    # the paired table: every point but the grid's reference, each cell with its verdict
    reference = next(iter(load_grid(name).reference.values()))
    assert first_cells[1] == [label for label in labels if label != reference]
    words = ("better", "worse", "indistinguishable")
    cells = [c for line in tables[1][2:] for c in line.strip("| ").split(" | ")[1:]]
    assert cells and all(c == "–" or c.endswith(words) for c in cells)
    assert "Power" in md
    tex = (reports / f"{name}.tex").read_text()
    assert "\\begin{tabular}" in tex and "\\textbf{" in tex
    for path in reports.glob(f"{name}*.png"):
        assert path.read_bytes()[:4] == b"\x89PNG"
        assert path.with_suffix(".pdf").read_bytes()[:4] == b"%PDF"
    assert list(reports.glob(f"{name}*.png"))


def test_goals_titles_and_units_are_the_metrics_declarations(
    analysis_env: Path, tmp_path: Path
) -> None:
    """Every score the evaluator writes has a goal and a title, read from its declaration;
    a feature space added anywhere gets them too."""
    import tables

    assert tables.TITLES["fd_sei"] == "SFID" and tables.TITLES["kid_kmer"] == "KID k-mer ×10³"
    assert tables.GOALS["gc_ratio_gc_at"] == "real" and tables.GOALS["fraction_unique"] == "max"
    assert tables.GOALS["fd_other"] == "min" and tables.DISPLAY_SCALE["kid_other"] == 1e3
    assert tables.GOALS.get("kid_oracle_lo") is None and tables.DISPLAY_SCALE.get("n", 1.0) == 1.0
    seqs = ["ACGTACGTAAGGCCTT", "TTGCAACGTAGCATGC", "GGGCCCAATTACGATC", "ACACGTGTCAGTCAGT"]
    written = Evaluator(seqs, build_extractors({"kmer": {}}, tmp_path), train=seqs).score(seqs)
    undeclared = [m for m in written if score(m) is None and not m.endswith(("_std", "_lo", "_hi"))]
    assert not undeclared


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
    # mean [t interval]: two seeds, t(0.975, 1) = 12.706 times the standard error
    assert table.loc["b", "FD k-mer"] == "**1 [-5.35, 7.35]**"  # 1 ± 12.706 * 0.5
    assert table.loc["a", "FD k-mer"] == "2 [-10.7, 14.7]"  # 2 ± 12.706 * 1
    assert table.loc["real DNA (held out)", "GC ratio (G+C)/(A+T)"] == "2 [0.729, 3.27]"
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


def test_a_table_keeps_one_sample_count_and_refuses_two_oracles(analysis_env: Path) -> None:
    """FD at n = 256 and n = 1,000 differ by its 1/n bias, and two oracles are two
    instruments: rows at another n are left out (and counted), rows of two oracles refused."""
    import tables

    rows = made_results("steps").assign(n=1000, oracle="3544d1517053", oracle_test_accuracy=0.68)
    older = rows[rows["set"] == "generated"].head(30)
    older = older.assign(n=256, point="old-" + older["point"], oracle=np.nan)
    kept, note = tables.one_instrument(pd.concat([rows, older]), "ablation-steps")
    assert set(kept["n"]) == {1000} and len(kept) == len(rows)
    assert "n = 1,000 samples per point" in note and "oracle 3544d1517053" in note
    assert "point(s) at other n left out" in note
    mixed = rows.copy()
    mixed.loc[mixed.index[:7], "oracle"] = "aaaaaaaaaaaa"
    with pytest.raises(ValueError, match=r"ablation-steps: rows scored by different oracles"):
        tables.one_instrument(mixed, "ablation-steps")
    unrecorded = rows.copy()
    unrecorded.loc[unrecorded.index[:7], "oracle"] = np.nan
    with pytest.raises(ValueError, match=r"unrecorded \(7 rows\)"):
        tables.one_instrument(unrecorded, "ablation-steps")


def test_the_claims_table_decides_known_differences(analysis_env: Path) -> None:
    """Rows whose differences are planted: P2 far worse than random order in every seed is
    "reproduced", an AR model better than D3LM in every seed "contradicted", noise "undecided"
    with the seeds a decision would need; one row per claim, seven in all."""
    results = analysis_env / "results"
    for name in ("tokenization", "sampling", "steps", "temperature", "main"):
        rows = made_results(name, seeds=3).assign(n=1000)
        if name == "sampling":
            p2 = (rows["sampler"] == "p2") & (rows["metric"] == "fd_oracle")
            rows.loc[p2, "value"] += 40
        if name == "main":
            ar = (rows["model"] == "autoregressive") & (rows["metric"] == "fd_oracle")
            rows.loc[ar, "value"] -= 5
        rows.to_csv(results / f"ablation-{name}-micro.csv", index=False)
    runpy.run_path(str(ANALYSIS / "claims.py"), run_name="__main__")
    md = (analysis_env / "reports" / "micro" / "claims.md").read_text()
    lines = [line for line in md.splitlines() if line.startswith("| ")][1:]
    verdicts = {line.split(" | ")[0][2:]: line.split(" | ")[3] for line in lines}
    assert len(verdicts) == 7
    assert verdicts["The planning sampler P2 collapses"] == "reproduced"
    assert verdicts["D3LM beats an autoregressive model of the same size"] == "contradicted"
    assert verdicts["Diffusion pretraining beats MLM on fine-tuning MCC"] == "undecided"
    assert set(verdicts.values()) <= {"reproduced", "contradicted", "undecided"}
    assert "seeds to resolve" in md and "n = 1,000 samples per point" in md


def test_the_readme_copy_of_the_claims_keeps_the_rows_measured_at_its_scale(
    analysis_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scale with only the sampling grid (``small`` in the repository): its README table has
    the two claims that grid decides and names the five without rows; claims.md keeps all seven
    and the text outside the markers is untouched."""
    readme = analysis_env / "README.md"
    readme.write_text("before\n<!-- claims:micro -->\nold\n<!-- /claims:micro -->\nafter\n")
    monkeypatch.setenv("D3LM_README", str(readme))
    rows = made_results("sampling", seeds=3).assign(n=1000)
    rows.to_csv(analysis_env / "results" / "ablation-sampling-micro.csv", index=False)
    runpy.run_path(str(ANALYSIS / "claims.py"), run_name="__main__")
    page = readme.read_text()
    table = [line.split(" | ")[0][2:] for line in page.splitlines() if line.startswith("| ")]
    assert table[1:] == [
        "Random unmasking order beats confidence-style orders",
        "The planning sampler P2 collapses",
    ]
    assert page.startswith("before\n<!-- claims:micro -->\n") and page.endswith("after\n")
    assert "No rows yet at `micro` for: Non-overlapping 6-mer tokens" in page
    assert "Diffusion pretraining beats MLM on fine-tuning MCC." in page and "old" not in page
    md = (analysis_env / "reports" / "micro" / "claims.md").read_text()
    assert sum(line.startswith("| ") for line in md.splitlines()) == 1 + 7
    assert "| Claim | Paper | Suite | Verdict | To decide |" in md  # a grid without rows first


def test_the_reports_index_carries_every_table_with_its_note(analysis_env: Path) -> None:
    """``reports/<scale>/README.md`` (analysis/reports.py, the last step of ``make figures``):
    each grid with rows gets its table and the line giving n, seeds and intervals, the command
    that made it and links to its files; a grid without rows says so; a rerun writes the same
    page."""
    results, reports = analysis_env / "results", analysis_env / "reports" / "micro"
    for name in ("steps", "main"):
        rows = made_results(name).assign(n=1000)
        rows.to_csv(results / f"ablation-{name}-micro.csv", index=False)
        runpy.run_path(str(ANALYSIS / f"{name}.py"), run_name="__main__")
    runpy.run_path(str(ANALYSIS / "reports.py"), run_name="__main__")
    page = (reports / "README.md").read_text()
    steps = (reports / "steps.md").read_text().split("\n\n")
    assert "\n\n".join(steps[:3]) in page  # caption, table, note
    assert "n = 1,000 samples per point; training seeds 0, 1" in page
    assert "Paired against the reference point" not in page  # that stays in steps.md
    assert "`make ablation-steps SCALE=micro`" in page
    assert "`make ablation-main SCALE=micro`" in page
    assert "[steps.md](steps.md)" in page and "![Denoising steps](steps.png)" in page
    assert "`make ablation-temperature SCALE=micro` (paper Table 5): no rows in" in page
    runpy.run_path(str(ANALYSIS / "reports.py"), run_name="__main__")
    assert (reports / "README.md").read_text() == page
