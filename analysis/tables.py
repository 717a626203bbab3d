"""Shared helpers of the analysis notebooks: read ``results/``, summarise over seeds, write tables.

The notebooks read the tidy CSV that ``d3lm ablation`` writes (one row per point, set, metric)
and, as plain YAML, the grid file it ran (axis order, reference point): no library code that
trains or scores, so a table can be rebuilt, restyled or extended without touching a model.
Every cell is a mean with its 95 % interval over training seeds (Student t; with one seed, the
within-seed bootstrap interval of KID where the rows carry it), and every table states its n
(samples per point) and its seeds; a table never mixes sample counts or oracles silently
(:func:`one_instrument`). Paired differences against the grid's reference point and their
verdicts come from :mod:`d3lm.stats`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from d3lm import stats
from d3lm.io import write_text
from d3lm.metrics.scores import ScoreField

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
    "kid_oracle",
    "fd_oracle",
    "fd_kmer",
    "js_k6",
    "gc_ratio_gc_at",
    "cpg_oe",
    "fraction_unique",
    "nearest_mean",
]

#: How to pick the best generated row of a metric (lowest, highest, or closest to real DNA), the
#: column title of the printed tables and the factor a value is printed with (KID is ~1e-3
#: here: shown x 10^3), as each metric declares them.
GOALS = ScoreField("goal")
TITLES = ScoreField("title")
DISPLAY_SCALE = ScoreField("scale")
#: Rows of a metric ``m`` that hold its within-seed bootstrap interval (``d3lm evaluate``).
LOW, HIGH = "_lo", "_hi"
CONFIDENCE = 0.95


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """seaborn's ``errorbar`` callable: the 95 % t interval over seeds that the tables print
    (the mean itself when there is one seed)."""
    over_seeds = stats.seed_interval(values, CONFIDENCE)
    if over_seeds.seeds < 2:
        return over_seeds.mean, over_seeds.mean
    return over_seeds.low, over_seeds.high


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


#: A grid value that stands for every registered plugin the grid does not list.
WILDCARD = "*"


def experiments_dir() -> Path:
    """``experiments/`` (``D3LM_EXPERIMENTS`` moves it, as it does for ``d3lm ablation``)."""
    return Path(os.environ.get("D3LM_EXPERIMENTS", Path(__file__).parents[1] / "experiments"))


def grid_file_paths() -> list[Path]:
    """Every ablation grid file, ``experiments/ablations/*.yaml``."""
    return sorted((experiments_dir() / "ablations").glob("*.yaml"))


def understanding_file() -> Path:
    return experiments_dir() / "understanding.yaml"


def grid_file(grid: str) -> dict[str, Any]:
    """The grid file ``experiments/ablations/<grid>.yaml`` as plain data: read as YAML rather
    than through the library's grid loader, so the notebooks depend on the results and the files
    they were made from, never on the code that made them."""
    path = experiments_dir() / "ablations" / f"{grid}.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def grid_reference(grid: str) -> dict[str, str]:
    """The grid file's ``reference`` point (axis -> label): the paper's setting, which every
    other point is paired against."""
    return {str(a): str(v) for a, v in (grid_file(grid).get("reference") or {}).items()}


def axis_order(spec: Any, found: Sequence[str]) -> list[str]:
    """An axis's labels in the grid file's order. ``"*"`` stands for the registered plugins the
    file does not list, by name, as ``d3lm ablation`` expands it; here they are the labels the
    results hold (``found``) that the file does not list."""
    values = spec.get("values") if isinstance(spec, Mapping) else spec
    values = [values] if isinstance(values, str) else values or []
    listed = [str(v.get("label")) if isinstance(v, Mapping) else str(v) for v in values]
    if WILDCARD not in listed:
        return listed
    at = listed.index(WILDCARD)
    rest = sorted({str(v) for v in found} - set(listed))
    return [*listed[:at], *rest, *listed[at + 1 :]]


def in_grid_order(rows: pd.DataFrame, grid: str, axes: Sequence[str]) -> pd.DataFrame:
    """Rows sorted by the order of each axis's values in the grid file, so tables and figures
    read as the grid does, whatever order parallel workers (``--shard``) finished in; values
    the grid no longer lists (or a grid file that is gone) keep the results file's order."""
    try:
        spec = grid_file(grid)
    except (OSError, yaml.YAMLError):
        return rows
    specs = {str(n): s for kind in ("train", "sample") for n, s in (spec.get(kind) or {}).items()}
    keys = []
    for axis in axes:
        order = axis_order(specs.get(axis, []), rows[axis].dropna().unique())
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


def one_instrument(rows: pd.DataFrame, source: str) -> tuple[pd.DataFrame, str]:
    """The rows of one sample count (the largest of the generated rows') scored by one oracle,
    and a sentence saying so: FD at n = 256 and at 1,000 differ by its 1/n bias, and two oracles
    are two instruments. Rows of other sample counts are left out and counted in the sentence;
    rows of two oracles (the ``oracle`` checksum column) are an error naming both."""
    n = int(rows.loc[rows["set"] == GENERATED, "n"].max()) if "n" in rows else None
    same_n = pd.Series(True, index=rows.index) if n is None else rows["n"] == n
    kept = rows[same_n]
    left_out = rows.loc[(rows["set"] == GENERATED) & ~same_n, "point"]
    oracles = kept["oracle"].fillna("unrecorded") if "oracle" in kept else pd.Series(dtype=str)
    if oracles.nunique() > 1:
        counts = ", ".join(f"{o} ({k} rows)" for o, k in oracles.value_counts().items())
        raise ValueError(
            f"{source}: rows scored by different oracles: {counts}; rescore the grid with "
            "`d3lm ablation GRID` (it re-evaluates stored samples) before making a table"
        )
    seeds = sorted(int(s) for s in kept.loc[kept["set"] == GENERATED, "seed"].unique())
    note = f"n = {n:,} samples per point" if n is not None else "n not recorded"
    note += f"; training seeds {', '.join(map(str, seeds))}"
    if len(oracles):
        accuracy = kept.get("oracle_test_accuracy", pd.Series(dtype=float)).dropna()
        note += f"; oracle {oracles.iloc[0]}"
        if len(accuracy):
            note += f" (test accuracy {float(accuracy.iloc[0]):.3f})"
    if len(left_out):
        note += f"; {left_out.nunique()} point(s) at other n left out"
    return kept, note


def interval_of(values: pd.DataFrame, metric: str) -> pd.Series:
    """Mean and 95 % interval of one (table row, metric) group over seeds; one seed: the
    bootstrap interval rows of the metric when there are some."""
    over_seeds = stats.seed_interval(values["value"].to_numpy(), CONFIDENCE)
    low, high, basis = over_seeds.low, over_seeds.high, "seeds"
    if over_seeds.seeds == 1 and {f"{metric}{LOW}", f"{metric}{HIGH}"} <= set(values.columns):
        low, high = values[f"{metric}{LOW}"].iloc[0], values[f"{metric}{HIGH}"].iloc[0]
        basis = "bootstrap" if pd.notna(low) else ""
    return pd.Series(
        {
            "mean": over_seeds.mean,
            "std": values["value"].std(),
            "low": low,
            "high": high,
            "count": over_seeds.seeds,
            "basis": basis if pd.notna(low) else "",
        }
    )


def summarise(rows: pd.DataFrame, axes: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Mean, std, 95 % interval (``low``, ``high``, ``basis``) and seed count per (table row,
    metric), generated rows in grid order first, then the reference rows (which do not depend
    on the model: every table carries them)."""
    rows = rows.assign(row=row_labels(rows, axes))
    bounds = rows[rows["metric"].str.endswith((LOW, HIGH))]
    rows = rows[rows["metric"].isin(metrics)]
    if len(bounds):  # the bootstrap rows of a metric beside its value, matched by point and set
        wide = bounds.pivot_table(
            index=["point", "set"], columns="metric", values="value", aggfunc="first"
        )
        rows = rows.join(wide, on=["point", "set"])
    groups = rows.groupby(["row", "metric"], sort=False)
    summary = pd.DataFrame(
        [
            {"row": row, "metric": metric, **interval_of(group, metric)}
            for (row, metric), group in groups
        ]
    )
    generated = list(dict.fromkeys(rows.loc[rows["set"] == GENERATED, "row"]))
    references = [name for name in REFERENCE_SETS.values() if name in set(rows["row"])]
    order = generated + references
    return (
        summary.assign(
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


def _cell(cell: pd.Series | None, bold: bool, latex: bool, scale: float = 1.0) -> str:
    """``mean [low, high]`` (the interval when there is one), in display units."""
    if cell is None:
        return "–"
    mean, low, high = (cell[k] * scale for k in ("mean", "low", "high"))
    text = f"{mean:.3g}" if np.isnan(low) else f"{mean:.3g} [{low:.3g}, {high:.3g}]"
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
    """Rows x metrics of "mean [95 % interval]" strings; the best generated mean of each metric
    in bold."""
    best = best_rows(summary, goals)
    rows = list(summary["row"].cat.categories)
    table = pd.DataFrame(index=pd.Index(rows, name=first_column))
    for metric in [m for m in metrics if m in set(summary["metric"])]:
        cells = summary[summary["metric"] == metric].set_index("row")
        table[TITLES.get(metric, metric)] = [
            _cell(
                cells.loc[row] if row in cells.index else None,
                row in best.get(metric, ()),
                latex,
                DISPLAY_SCALE.get(metric, 1.0),
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
    instrument: str = "",
    sections: Sequence[tuple[str, str]] = (),
    goals: Mapping[str, str] = GOALS,
) -> tuple[Path, Path]:
    """``reports/<scale>/<stem>.md`` and ``.tex``; returns both paths. ``sections``: more
    Markdown/LaTeX pairs (paired differences, power) after the table."""
    _, reports, _ = settings()
    seeds = int(summary.loc[summary["generated"], "count"].max())
    note = (
        f"Mean [95 % interval] over {seeds} seed(s) (Student t; with one seed, the within-seed "
        "bootstrap interval where there is one); bold: the best generated mean of each column."
    )
    if instrument:
        note = f"{instrument}. {note}"
    md = to_markdown(format_table(summary, metrics, first_column, goals=goals))
    tex = to_latex(format_table(summary, metrics, first_column, latex=True, goals=goals))
    md_path, tex_path = reports / f"{stem}.md", reports / f"{stem}.tex"
    md_more = "".join(f"\n{m}\n" for m, _ in sections)
    tex_more = "".join(f"\n{t}\n" for _, t in sections)
    write_text(md_path, f"{caption}\n\n{md}\n\n{note}\n{md_more}")
    write_text(tex_path, f"% {caption}\n% {note}\n{tex}\n{tex_more}")
    return md_path, tex_path
