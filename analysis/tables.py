"""Shared helpers of the analysis notebooks: read ``results/``, summarise over seeds, write tables.

The notebooks read the tidy CSV that ``d3lm ablation`` writes (one row per point, set, metric)
and nothing else, so a table can be rebuilt, restyled or extended without touching a model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from d3lm.ablation import load_grid
from d3lm.io import write_text

#: Reference rows, in table order, with the names the tables print.
REFERENCE_SETS = {
    "real": "real DNA (held out)",
    "markov": "order-5 Markov",
    "shuffle": "dinucleotide shuffle",
    "uniform": "uniform random",
}
GENERATED = "generated"

#: The columns of the generation tables whose axis is a training or sampling setting.
GENERATION_METRICS = [
    "fd_sei",
    "fd_oracle",
    "fd_kmer",
    "js_k6",
    "gc_ratio_gc_at",
    "cpg_oe",
    "fraction_unique",
    "nearest_mean",
]

#: How to pick the best generated row of a metric: lowest, highest, or closest to real DNA.
GOALS = {
    "fd_sei": "min",
    "fd_oracle": "min",
    "fd_kmer": "min",
    "js_k4": "min",
    "js_k6": "min",
    "val_bpn": "min",
    "gc_content": "real",
    "gc_ratio_gc_at": "real",
    "gc_ratio_g_c": "real",
    "cpg_oe": "real",
    "fraction_unique": "max",
    "mean_hamming": "real",
    "nearest_mean": "real",
    "fraction_copies": "min",
}

#: Column titles of the printed tables.
TITLES = {
    "fd_sei": "SFID",
    "fd_oracle": "FD oracle",
    "fd_kmer": "FD k-mer",
    "js_k4": "JS 4-mer",
    "js_k6": "JS 6-mer",
    "val_bpn": "val bits/nt",
    "gc_content": "GC",
    "gc_ratio_gc_at": "GC ratio (G+C)/(A+T)",
    "gc_ratio_g_c": "G/C",
    "cpg_oe": "CpG o/e",
    "fraction_unique": "unique",
    "mean_hamming": "diversity (Hamming)",
    "nearest_mean": "novelty (nearest train)",
    "fraction_copies": "train copies",
}


def settings() -> tuple[Path, Path, str]:
    """(results folder, reports folder for this scale, scale) from the environment
    (``D3LM_RESULTS``, ``D3LM_REPORTS``, ``SCALE``), defaulting to the repository's."""
    scale = os.environ.get("SCALE", "tiny")
    results = Path(os.environ.get("D3LM_RESULTS", "results"))
    reports = Path(os.environ.get("D3LM_REPORTS", "reports")) / scale
    return results, reports, scale


def read_rows(experiment: str, command: str, text_columns: Sequence[str]) -> pd.DataFrame:
    """``results/<experiment>-<scale>.csv`` with ``text_columns`` read as text labels; a missing
    file names the ``command`` (given the scale) that writes it."""
    results, _, scale = settings()
    path = results / f"{experiment}-{scale}.csv"
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no results yet; run `{command} --scale {scale}` (or its make target)"
        )
    return pd.read_csv(path, dtype={column: str for column in text_columns})


def load_results(grid: str, axes: Sequence[str]) -> pd.DataFrame:
    """``results/ablation-<grid>-<scale>.csv`` with the axis columns as text labels."""
    results, _, scale = settings()
    path = results / f"ablation-{grid}-{scale}.csv"
    rows = read_rows(f"ablation-{grid}", f"d3lm ablation {grid}", axes)
    missing = [axis for axis in axes if axis not in rows.columns]
    if missing:
        raise ValueError(f"{path}: no column for axis {missing}")
    return in_grid_order(rows, grid, axes)


def in_grid_order(rows: pd.DataFrame, grid: str, axes: Sequence[str]) -> pd.DataFrame:
    """Rows sorted by the order of each axis's values in the grid file, so tables and figures
    read as the grid does, whatever order parallel workers (``--shard``) finished in; values
    the grid no longer lists (or a grid file that is gone) keep the results file's order."""
    try:
        spec = load_grid(grid)
    except (OSError, ValueError):
        return rows
    labels = {a.name: [s.label for s in a.settings] for a in [*spec.train, *spec.sample]}
    keys = []
    for axis in axes:
        order = labels.get(axis, [])
        keys.append(rows[axis].map(lambda v, o=order: o.index(v) if v in o else len(o)))
    if not keys:
        return rows
    position = pd.concat(keys, axis=1).apply(tuple, axis=1)
    return rows.iloc[position.argsort(kind="stable")].reset_index(drop=True)


def row_labels(rows: pd.DataFrame, axes: Sequence[str]) -> pd.Series:
    """The table row of each result row: the axis values of a generated row (joined with ', '),
    the printed name of a reference set otherwise."""
    generated = rows["set"] == GENERATED
    axis_label = rows[list(axes)].fillna("").astype(str).agg(", ".join, axis=1)
    return axis_label.where(generated, rows["set"].map(REFERENCE_SETS).fillna(rows["set"]))


def summarise(rows: pd.DataFrame, axes: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Mean, std and seed count per (table row, metric), generated rows in grid order first,
    then the reference rows (which do not depend on the model: every table carries them)."""
    rows = rows[rows["metric"].isin(metrics)].assign(row=row_labels(rows, axes))
    stats = rows.groupby(["row", "metric"], sort=False)["value"].agg(["mean", "std", "count"])
    generated = list(dict.fromkeys(rows.loc[rows["set"] == GENERATED, "row"]))
    references = [name for name in REFERENCE_SETS.values() if name in set(rows["row"])]
    order = generated + references
    return (
        stats.reset_index()
        .assign(
            row=lambda f: pd.Categorical(f["row"], categories=order, ordered=True),
            generated=lambda f: f["row"].isin(generated),
        )
        .sort_values(["row"])
        .reset_index(drop=True)
    )


def best_rows(summary: pd.DataFrame, goals: Mapping[str, str] = GOALS) -> dict[str, set[str]]:
    """Metric -> the generated rows that are best by ``goals`` (ties: all of them); metrics
    without a goal get none."""
    out = {}
    real = summary[summary["row"] == REFERENCE_SETS["real"]].set_index("metric")["mean"]
    for metric, group in summary[summary["generated"]].groupby("metric"):
        goal = goals.get(metric)
        if goal is None or group["mean"].isna().all():
            continue
        if goal == "real":
            if metric not in real:
                continue
            key = (group["mean"] - real[metric]).abs()
        else:
            key = group["mean"] if goal == "min" else -group["mean"]
        out[metric] = {str(row) for row in group.loc[np.isclose(key, key.min()), "row"]}
    return out


def _cell(stats: pd.Series | None, bold: bool, latex: bool) -> str:
    if stats is None:
        return "–"
    mean, std = stats["mean"], stats["std"]
    pm = " $\\pm$ " if latex else " ± "
    text = f"{mean:.4g}" if stats["count"] < 2 or np.isnan(std) else f"{mean:.4g}{pm}{std:.2g}"
    if bold:
        return f"\\textbf{{{text}}}" if latex else f"**{text}**"
    return text


def format_table(
    summary: pd.DataFrame,
    metrics: Sequence[str],
    first_column: str,
    latex: bool = False,
    goals: Mapping[str, str] = GOALS,
) -> pd.DataFrame:
    """Rows x metrics of "mean ± std" strings; the best generated row of each metric in bold."""
    best = best_rows(summary, goals)
    rows = list(summary["row"].cat.categories)
    table = pd.DataFrame(index=pd.Index(rows, name=first_column))
    for metric in [m for m in metrics if m in set(summary["metric"])]:
        cells = summary[summary["metric"] == metric].set_index("row")
        table[TITLES.get(metric, metric)] = [
            _cell(
                cells.loc[row] if row in cells.index else None, row in best.get(metric, ()), latex
            )
            for row in rows
        ]
    return table


def to_markdown(table: pd.DataFrame) -> str:
    header = [table.index.name or "", *table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    body = table.itertuples(name=None)
    lines += ["| " + " | ".join([str(i), *r]) + " |" for i, *r in body]
    return "\n".join(lines)


def to_latex(table: pd.DataFrame) -> str:
    def esc(text: str) -> str:
        for char in ("_", "%", "&", "#"):
            text = text.replace(char, "\\" + char)
        return text

    header = [esc(table.index.name or ""), *map(esc, table.columns)]
    lines = [
        "\\begin{tabular}{l" + "r" * len(table.columns) + "}",
        "\\toprule",
        " & ".join(header) + " \\\\",
        "\\midrule",
        *(" & ".join([esc(str(i)), *r]) + " \\\\" for i, *r in table.itertuples(name=None)),
        "\\bottomrule",
        "\\end{tabular}",
    ]
    return "\n".join(lines)


def write_table(
    summary: pd.DataFrame,
    metrics: Sequence[str],
    first_column: str,
    stem: str,
    caption: str,
    goals: Mapping[str, str] = GOALS,
) -> tuple[Path, Path]:
    """``reports/<scale>/<stem>.md`` and ``.tex``; returns both paths."""
    _, reports, _ = settings()
    seeds = int(summary.loc[summary["generated"], "count"].max())
    note = f"Mean ± std over {seeds} seed(s); bold: the best generated row of each column."
    md = to_markdown(format_table(summary, metrics, first_column, goals=goals))
    tex = to_latex(format_table(summary, metrics, first_column, latex=True, goals=goals))
    md_path, tex_path = reports / f"{stem}.md", reports / f"{stem}.tex"
    write_text(md_path, f"{caption}\n\n{md}\n\n{note}\n")
    write_text(tex_path, f"% {caption}\n% {note}\n{tex}\n")
    return md_path, tex_path
