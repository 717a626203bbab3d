"""Paired comparisons against a grid's reference point (the paper's setting), their verdicts,
the power lines, and a grid's whole report (table, paired differences, power).

Every difference is point minus reference paired by training and sampling seed, with a 95 %
t interval over seeds (:mod:`d3lm.stats`); a verdict is one of better, worse or
indistinguishable, never a bare ranking.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tables import (
    CONFIDENCE,
    DISPLAY_SCALE,
    GENERATED,
    GOALS,
    HIGH,
    LOW,
    TITLES,
    grid_reference,
    one_instrument,
    row_labels,
    summarise,
    t_interval,
    to_latex,
    to_markdown,
    write_table,
)

from d3lm import stats
from d3lm.io import splice


def reference_label(rows: pd.DataFrame, axes: Sequence[str], reference: Mapping[str, str]) -> str:
    """The table row of the grid's reference point (the paper's setting)."""
    generated = rows[rows["set"] == GENERATED]
    match = np.logical_and.reduce(
        [generated[a].astype(str) == str(v) for a, v in reference.items()]
    )
    labels = row_labels(generated[match], axes).unique()
    if len(labels) != 1:
        raise ValueError(f"reference point {dict(reference)} is not one row of these results")
    return str(labels[0])


def paired(
    rows: pd.DataFrame,
    axes: Sequence[str],
    reference: Mapping[str, str],
    metrics: Sequence[str],
    goals: Mapping[str, str] = GOALS,
) -> pd.DataFrame:
    """Per generated point other than the reference and per metric: point - reference paired
    by seed (same training and sampling seed), its 95 % interval over seeds, the SD of the
    per-seed differences and the verdict. A metric whose goal is "real" (GC ratio, CpG o/e)
    is compared as the distance to the real row of the same seed."""
    ref = reference_label(rows, axes, reference)
    labelled = rows.assign(row=row_labels(rows, axes))
    real = labelled[labelled["set"] == "real"].groupby(["metric", "seed"])["value"].first()
    out = []
    for metric in [m for m in metrics if m in set(rows["metric"]) and goals.get(m)]:
        values = labelled[(labelled["set"] == GENERATED) & (labelled["metric"] == metric)]
        if goals[metric] == "real":
            target = [real.get((metric, seed), np.nan) for seed in values["seed"]]
            values = values.assign(value=(values["value"] - np.asarray(target)).abs())
        by_row = {
            row: dict(zip(group["seed"].astype(int), group["value"], strict=True))
            for row, group in values.groupby("row", sort=False)
        }
        base = by_row.get(ref, {})
        for row, point in by_row.items():
            if row == ref:
                continue
            diff = stats.paired_difference(point, base, CONFIDENCE)
            per_seed = [point[s] - base[s] for s in sorted(set(point) & set(base))]
            goal = "max" if goals[metric] == "max" else "min"
            out.append(
                {
                    "row": row,
                    "metric": metric,
                    "mean": diff.mean,
                    "low": diff.low,
                    "high": diff.high,
                    "count": diff.seeds,
                    "sd": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else np.nan,
                    "verdict": stats.verdict(diff, goal),
                }
            )
    return pd.DataFrame(out)


def paired_section(table: pd.DataFrame, reference: str, first_column: str) -> tuple[str, str]:
    """Markdown and LaTeX of the paired differences: one column per metric, "diff [interval]
    verdict" per cell."""
    if table.empty:
        return "", ""
    rows = list(dict.fromkeys(table["row"]))
    wide = pd.DataFrame(index=pd.Index(rows, name=first_column))
    for metric, group in table.groupby("metric", sort=False):
        scale = DISPLAY_SCALE.get(metric, 1.0)
        cells = group.set_index("row")
        wide[f"Δ {TITLES.get(metric, metric)}"] = [
            _difference(cells.loc[r], scale) if r in cells.index else "–" for r in rows
        ]
    intro = (
        f"Paired against the reference point **{reference}** (the paper's setting on this axis; "
        "every other setting is the scale's): point minus reference per training and sampling "
        "seed, mean [95 % t interval over seeds], and the verdict (GC ratio and CpG o/e: "
        "distance to real DNA of the same seed)."
    )
    return f"{intro}\n\n{to_markdown(wide)}", f"% {intro}\n{to_latex(wide)}"


def _difference(cell: pd.Series, scale: float) -> str:
    mean, low, high = (cell[k] * scale for k in ("mean", "low", "high"))
    text = f"{mean:+.3g}" if np.isnan(low) else f"{mean:+.3g} [{low:+.3g}, {high:+.3g}]"
    return f"{text} {cell['verdict']}"


def power_section(
    table: pd.DataFrame, rows: pd.DataFrame, deltas: Mapping[str, float]
) -> tuple[str, str]:
    """How many seeds would resolve a difference of ``deltas[metric]`` (display units) with
    80 % power, at this n and at four times as many samples: from the median SD of the paired
    differences over points and, for the sampling part, the median within-seed bootstrap
    interval (capped by the SD it is part of)."""
    n = int(rows.loc[rows["set"] == GENERATED, "n"].max()) if "n" in rows else None
    lines = []
    for metric, delta in deltas.items():
        spread = table.loc[table["metric"] == metric, "sd"].dropna()
        title = TITLES.get(metric, metric)
        if spread.empty or n is None:
            lines.append(f"- {title}: needs two or more seeds to estimate the seed-to-seed spread.")
            continue
        scale = DISPLAY_SCALE.get(metric, 1.0)
        sd = float(spread.median()) * scale
        names = [metric + LOW, metric + HIGH]
        bounds = rows[(rows["set"] == GENERATED) & rows["metric"].isin(names)]
        widths = bounds.pivot_table(index="point", columns="metric", values="value")
        now = stats.seeds_needed(delta, sd)
        head = (
            f"- {title}: paired differences scatter with SD {sd:.3g} over seeds (median over "
            f"points); a difference of {delta:g} needs {_seeds(now)} at n = {n:,}"
        )
        if len(widths.columns) != 2:  # no within-seed interval: the sampling part is unknown
            lines.append(f"{head} (80 % power, 5 % two-sided paired t).")
            continue
        se = (widths[metric + HIGH] - widths[metric + LOW]) * scale / (2 * 1.959964)
        # a difference of two independent sample sets; the median point, as for the spread
        # (a collapsed sampler's huge interval would stand for every point otherwise)
        sampling = 2 * float((se**2).median())
        more = stats.seeds_needed(delta, stats.projected_sd(sd, sampling, n, 4 * n))
        lines.append(
            f"{head} and {_seeds(more)} at n = {4 * n:,}, where the sampling part (SD "
            f"{np.sqrt(sampling):.3g} at n = {n:,}, from the bootstrap) halves (80 % power, "
            "5 % two-sided paired t)."
        )
    text = "Power (what a cluster run would need):\n\n" + "\n".join(lines)
    return text, "% " + text.replace("\n", "\n% ")


def _seeds(count: int | None) -> str:
    return "more than 10,000 seeds" if count is None else f"{count} seeds"


@dataclass(frozen=True)
class Report:
    """What :func:`write_report` made: the files, the rows it used and the paired rows."""

    markdown: Path
    latex: Path
    rows: pd.DataFrame
    paired: pd.DataFrame


#: The differences each report's power lines are about, in display units (KID x 10^3).
DELTAS = {"kid_oracle": 1.0, "fd_oracle": 0.2}


def write_report(
    grid: str,
    rows: pd.DataFrame,
    axes: Sequence[str],
    metrics: Sequence[str],
    first_column: str,
    caption: str,
    deltas: Mapping[str, float] = DELTAS,
    stem: str | None = None,
) -> Report:
    """A grid's whole report: the table (one n, one oracle), the paired differences against
    the grid file's ``reference`` point with verdicts, and the power lines."""
    rows, instrument = one_instrument(rows, f"ablation-{grid}")
    reference = grid_reference(grid)
    summary = summarise(rows, axes, metrics)
    table = paired(rows, axes, reference, metrics)
    sections = [
        paired_section(table, reference_label(rows, axes, reference), first_column),
        power_section(table, rows, {m: d for m, d in deltas.items() if m in metrics}),
    ]
    md, tex = write_table(
        summary, metrics, first_column, stem or grid, caption, instrument, sections
    )
    return Report(md, tex, rows, table)


#: The repository's front page, whose short tables ``make figures`` splices in.
README = Path(__file__).resolve().parents[1] / "README.md"


def front_table(
    report: Report,
    axes: Sequence[str],
    first_column: str,
    means: Mapping[str, tuple[str, str]],
    deltas: Mapping[str, str],
) -> pd.DataFrame:
    """A README-sized table of a report: per generated point each ``means`` metric over seeds
    (title, and a format of ``mean``, ``low`` and ``high``, its 95 % t interval) and the
    seed-paired difference from the reference of each ``deltas`` metric (title), "diff [95 %
    interval] verdict"; a metric the rows lack is left out."""
    rows = report.rows
    generated = rows[rows["set"] == GENERATED].assign(row=row_labels(rows, axes))
    wide = generated.pivot_table(index="row", columns="metric", values="value", sort=False)
    table = pd.DataFrame(index=pd.Index(wide.index, name=first_column))
    for metric, (title, fmt) in means.items():
        if metric not in wide:
            continue
        scale = DISPLAY_SCALE.get(metric, 1.0)
        values = generated[generated["metric"] == metric].groupby("row", sort=False)["value"]
        cells = {}
        for row, seeds in values:
            low, high = t_interval(list(seeds * scale))
            cells[row] = fmt.format(mean=seeds.mean() * scale, low=low, high=high)
        table[title] = [cells.get(r, "–") for r in table.index]
    for metric, title in deltas.items():
        if metric not in wide:
            continue
        cells = report.paired[report.paired["metric"] == metric].set_index("row")
        scale = DISPLAY_SCALE.get(metric, 1.0)
        table[title] = [
            _difference(cells.loc[r], scale) if r in cells.index else "reference"
            for r in table.index
        ]
    return table


def has_front(marker: str) -> bool:
    """Whether the README has a ``<!-- marker -->`` table for a notebook to fill."""
    return README.exists() and f"<!-- {marker} -->" in README.read_text()


def splice_front(marker: str, table: pd.DataFrame, note: str) -> None:
    """Write ``table`` and ``note`` between the README's ``<!-- marker -->`` lines."""
    splice(README, marker, f"{to_markdown(table)}\n\n{note}")
