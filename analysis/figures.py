"""Shared figure helpers of the analysis notebooks: seaborn plots of one metric over a grid axis,
with the real-DNA and baseline levels drawn beside the generated points, saved as PNG and PDF."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: `make figures` runs the notebooks as plain scripts

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from tables import (
    DISPLAY_SCALE,
    GENERATED,
    REFERENCE_SETS,
    TITLES,
    row_labels,
    settings,
    t_interval,
)

from d3lm.io import atomic_path

#: Line styles of the reference levels drawn across every figure.
REFERENCE_STYLE = {"real": "-", "markov": "--", "shuffle": ":", "uniform": "-."}
#: How far left of its point's interval (in category widths) each seed's dot is drawn.
SEED_OFFSET = 0.22


def metric_figure(
    rows: pd.DataFrame,
    axes: Sequence[str],
    metric: str,
    references: Sequence[str] = ("real", "markov"),
) -> plt.Figure:
    """``metric`` of the generated rows per grid point: one dot per training seed and the mean
    with its 95 % t interval over seeds (the tables' interval), with horizontal lines at the
    reference sets' means."""
    data = rows[rows["metric"] == metric].assign(point=row_labels(rows, axes))
    data = data.assign(value=data["value"] * DISPLAY_SCALE.get(metric, 1.0))  # the tables' units
    generated = data[data["set"] == GENERATED]
    if generated.empty:
        raise ValueError(f"no generated rows of metric {metric!r}")
    order = list(dict.fromkeys(generated["point"]))
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(order) + 2), 3.2))
    common = {"data": generated, "x": "point", "y": "value", "order": order, "ax": ax}
    sns.pointplot(
        **common, errorbar=t_interval, color="C0", linestyle="none", capsize=0.2, markersize=4
    )
    # the seeds beside their interval, not hidden behind it; a fixed offset, no random jitter:
    # `make figures` must rebuild a figure byte for byte
    ax.scatter(
        generated["point"].map({p: i for i, p in enumerate(order)}) - SEED_OFFSET,
        generated["value"],
        s=10,
        color="0.35",
        zorder=3,
        label="one training seed",
    )
    for name in references:
        level = data.loc[data["set"] == name, "value"]
        if len(level):
            ax.axhline(
                level.mean(),
                color="0.3",
                ls=REFERENCE_STYLE.get(name, "--"),
                lw=1,
                label=REFERENCE_SETS.get(name, name),
            )
    values = generated["value"][generated["value"] > 0]
    if len(values) and values.max() > 20 * values.min():
        # one collapsed point (a planning sampler) would flatten the rest; KID can be <= 0
        # (real DNA against real DNA), which only a symmetric log axis shows
        if (data["value"] > 0).all():
            ax.set_yscale("log")
        else:
            ax.set_yscale("symlog", linthresh=float(values.min()))
    ax.set_xlabel(", ".join(axes))
    ax.set_ylabel(TITLES.get(metric, metric))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False, fontsize="small")
    ax.tick_params(axis="x", rotation=30 if len(order) > 5 else 0)
    fig.tight_layout()
    return fig


def save_figure(fig: plt.Figure, stem: str) -> list[Path]:
    """``reports/<scale>/<stem>.png`` and ``.pdf``, each written atomically; no creation date in
    the PDF, so rebuilding a figure from the same results leaves the repository unchanged."""
    _, reports, _ = settings()
    paths = []
    for fmt in ("png", "pdf"):
        path = reports / f"{stem}.{fmt}"
        with atomic_path(path) as tmp:
            metadata = {"CreationDate": None} if fmt == "pdf" else {}
            fig.savefig(tmp, format=fmt, dpi=200, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    plt.close(fig)
    return paths


def headline(rows: pd.DataFrame) -> str:
    """The figure metric: SFID when the grid had Sei weights, else the oracle KID (unbiased at
    any n), else the oracle FD, else k-mer FD."""
    present = set(rows["metric"])
    for metric in ("fd_sei", "kid_oracle", "fd_oracle", "fd_kmer"):
        if metric in present:
            return metric
    raise ValueError("no Fréchet distance in the results (evaluate.features is empty)")


def pareto_figure(rows: pd.DataFrame, axes: Sequence[str], metric: str, cost: str) -> plt.Figure:
    """Quality against cost: per grid point the mean ``cost`` over seeds (x) and the mean
    ``metric`` with its 95 % t interval over seeds (y), each point labelled, with the real-DNA
    level drawn across; lower-left is cheaper and better."""
    data = rows.assign(point=row_labels(rows, axes))
    generated = data[data["set"] == GENERATED]
    y = generated[generated["metric"] == metric]
    x = generated[generated["metric"] == cost].groupby("point")["value"].mean()
    scale = DISPLAY_SCALE.get(metric, 1.0)
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for point, group in y.groupby("point", sort=False):
        if point not in x:
            continue
        low, high = t_interval(group["value"] * scale)
        mean = group["value"].mean() * scale
        ax.errorbar(
            x[point],
            mean,
            yerr=[[mean - low], [high - mean]],
            fmt="o",
            color="C0",
            capsize=3,
            markersize=4,
        )
        ax.annotate(
            point, (x[point], mean), textcoords="offset points", xytext=(4, 3), fontsize="x-small"
        )
    real = data.loc[(data["set"] == "real") & (data["metric"] == metric), "value"]
    if len(real):
        ax.axhline(real.mean() * scale, color="0.3", lw=1, label=REFERENCE_SETS["real"])
        ax.legend(frameon=False, fontsize="small")
    ax.set_xlabel(TITLES.get(cost, cost))
    ax.set_ylabel(TITLES.get(metric, metric))
    fig.tight_layout()
    return fig
