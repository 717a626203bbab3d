# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Classifier-free guidance
#
# One class-conditional model per seed, sampled with an equal share of every DHS cell type at
# guidance w = 0 to 4, and without a label (`uncond`) from the same models. The oracle judges
# each sample against the class it was meant to be: **target-class accuracy** (the fraction it
# assigns the intended class) beside the oracle distances, diversity and the nearest training
# sequence, since guidance buys fidelity to the class with diversity.
#
# Two levels frame the accuracy: the **ceiling**, the oracle's accuracy on held-out real
# sequences of each class (the real DNA row: no generator can be expected to beat the instrument
# on real DNA), and the **floor**, the unconditional row: the share of its samples the oracle
# puts in each class, i.e. the accuracy of a model that ignores the label (overall: the mean over
# classes, as every class is asked for equally).
#
# Reads `results/ablation-guidance-<SCALE>.csv` (written by `d3lm ablation guidance`); writes
# `reports/<SCALE>/guidance.md` (accuracy, whole-set distances, diversity, novelty),
# `guidance_classes.md` (per-class oracle FD and KID: each class's samples against the real
# sequences of that class), their `.tex`, and the figure (accuracy against KID, FD and diversity)
# as PNG and PDF. Cells are the mean [95 % interval] over training seeds (one seed: the Wilson
# interval of the set's accuracy, the bootstrap interval of its KID); every point is paired by
# seed against w = 0.

# %%
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from figures import save_figure
from tables import (
    DISPLAY_SCALE,
    GENERATED,
    REFERENCE_SETS,
    TITLES,
    load_results,
    settings,
    t_interval,
)
from verdicts import DELTAS, front_table, has_front, splice_front, write_report

from d3lm.metrics.scores import CLASS_SEP

AXES = ["guidance"]
ACCURACY = "accuracy_oracle"
SHARE = "share_oracle"
#: The x axes of the figure: what accuracy is bought with.
AGAINST = ["kid_oracle", "fd_oracle", "mean_hamming"]


def per_class(rows: pd.DataFrame, metric: str) -> list[str]:
    """The ``<metric>.<class>`` names present in the rows, sorted by class."""
    prefix = metric + CLASS_SEP
    return sorted(m for m in rows["metric"].unique() if str(m).startswith(prefix))


def with_floor(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with the floor as accuracy rows of every unlabelled generated point (one with
    class shares but no accuracy): per class, the share of its samples the oracle assigns that
    class; overall, their mean over the classes the labelled points asked for."""
    generated = rows[rows["set"] == GENERATED]
    labelled = set(generated.loc[generated["metric"] == ACCURACY, "point"])
    classes = [m.split(CLASS_SEP, 1)[1] for m in per_class(generated, ACCURACY)]
    shares = generated[
        ~generated["point"].isin(labelled)
        & generated["metric"].isin([f"{SHARE}{CLASS_SEP}{c}" for c in classes])
    ]
    if shares.empty:
        return rows
    floor = shares.assign(metric=ACCURACY + shares["metric"].str.removeprefix(SHARE))
    means = floor.groupby("point", sort=False)["value"].mean()
    overall = floor.drop_duplicates("point").assign(metric=ACCURACY)
    overall = overall.assign(value=overall["point"].map(means))
    return pd.concat([rows, floor, overall], ignore_index=True)


def level(rows: pd.DataFrame, chosen: pd.Series) -> float | None:
    """The mean overall accuracy of the chosen rows (the ceiling or the floor), if any."""
    values = rows.loc[chosen & (rows["metric"] == ACCURACY), "value"]
    return float(values.mean()) if len(values) else None


def guidance_figure(rows: pd.DataFrame, floor_points: set[str]) -> plt.Figure:
    """Target-class accuracy (y) against each of :data:`AGAINST` (x): a dot per seed and the
    mean with its 95 % t interval over seeds in both directions per guidance value; the
    ceiling (real DNA) and floor (unconditional) as horizontal lines."""
    generated = rows[(rows["set"] == GENERATED) & ~rows["point"].isin(floor_points)]
    wide = generated.pivot_table(
        index=["guidance", "seed"], columns="metric", values="value", aggfunc="first"
    ).reset_index()
    order = list(dict.fromkeys(generated["guidance"]))
    ceiling = level(rows, rows["set"] == "real")
    floor = level(rows, rows["point"].isin(floor_points))
    against = [m for m in AGAINST if m in wide.columns]
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, len(against), figsize=(3.6 * len(against), 3.4), squeeze=False)
    palette = dict(zip(order, sns.color_palette("viridis", len(order)), strict=True))
    for ax, metric in zip(axes[0], against, strict=True):
        scale = DISPLAY_SCALE.get(metric, 1.0)
        data = wide.assign(x=wide[metric] * scale)
        sns.scatterplot(
            data=data, x="x", y=ACCURACY, hue="guidance", hue_order=order, palette=palette,
            alpha=0.45, s=18, ax=ax, legend=ax is axes[0][0],
        )  # fmt: skip
        for value, group in data.groupby("guidance", sort=False):
            x, y = group["x"], group[ACCURACY]
            (x_low, x_high), (y_low, y_high) = t_interval(x), t_interval(y)
            ax.errorbar(
                x.mean(), y.mean(),
                xerr=[[x.mean() - x_low], [x_high - x.mean()]],
                yerr=[[y.mean() - y_low], [y_high - y.mean()]],
                fmt="o", color=palette[value], capsize=3, markersize=5,
            )  # fmt: skip
        for name, height, style in (("ceiling: real DNA", ceiling, "-"), ("floor", floor, ":")):
            if height is not None:
                ax.axhline(height, color="0.3", ls=style, lw=1, label=name)
        ax.set_xlabel(TITLES.get(metric, metric))
        ax.set_ylabel(TITLES.get(ACCURACY, ACCURACY))
    axes[0][0].legend(frameon=False, fontsize="x-small", title="guidance w")
    fig.tight_layout()
    return fig


# %%
rows = load_results("guidance", AXES)
floor_points = set(rows.loc[rows["set"] == GENERATED, "point"]) - set(
    rows.loc[(rows["set"] == GENERATED) & (rows["metric"] == ACCURACY), "point"]
)
rows = with_floor(rows)
metrics = [ACCURACY, *per_class(rows, ACCURACY), *AGAINST, "nearest_mean", "fraction_unique"]
caption = (
    "Classifier-free guidance: the oracle's accuracy on the intended class, per class and "
    f"overall; {REFERENCE_SETS['real']} is its ceiling (real sequences with their own labels), "
    "`uncond` (the same models, no label) its floor (the share of unconditional samples put in "
    "each class)."
)
report = write_report("guidance", rows, AXES, metrics, "guidance", caption)
print(report.markdown.read_text())

# %%
kids = per_class(rows, "kid_oracle")
classes = [*kids, *per_class(rows, "fd_oracle")]
if classes:
    per_class_report = write_report(
        "guidance",
        rows,
        AXES,
        classes,
        "guidance",
        "Per-class oracle KID and FD: each class's samples against the real sequences of that "
        "class (the real row: held-out real sequences of the class).",
        deltas=dict.fromkeys(kids, DELTAS["kid_oracle"]),  # as for the whole-set KID
        stem="guidance_classes",
    )
    print(per_class_report.markdown.read_text())

# %%
if ACCURACY in set(report.rows["metric"]):
    save_figure(guidance_figure(report.rows, floor_points), "guidance")
else:
    print("no accuracy rows: the samples carried no labels (sampled before sample.labels)")

# %% [markdown]
# The README's guidance table (between its `guidance:<SCALE>` markers): accuracy on the intended
# class, oracle KID and diversity per guidance (means over seeds), each paired against w = 0;
# the ceiling and floor in the note.

# %%
_, _, SCALE = settings()
if ACCURACY in set(report.rows["metric"]) and has_front(f"guidance:{SCALE}"):
    front = front_table(
        report,
        AXES,
        "guidance w",
        {
            "nfe": ("network calls / seq.", "{mean:.0f}"),
            "sample_s_per_1000": ("s / 1,000 seq.", "{mean:.0f}"),
            ACCURACY: ("accuracy (intended class)", "{mean:.3f} [{low:.3f}, {high:.3f}]"),
            "kid_oracle": ("KID oracle ×10³", "{mean:.1f} [{low:.1f}, {high:.1f}]"),
            "mean_hamming": ("diversity (Hamming)", "{mean:.4f} [{low:.4f}, {high:.4f}]"),
        },
        {ACCURACY: "Δ accuracy", "kid_oracle": "Δ KID ×10³"},
    )
    seeds = sorted(report.rows["seed"].dropna().astype(int).unique())
    n = int(report.rows.loc[report.rows["set"] == GENERATED, "n"].max())
    ceiling = level(report.rows, report.rows["set"] == "real")
    note = (
        f"`make ablation-guidance` at `{SCALE}`: n = {n:,} samples per point (an equal share "
        f"per class), training seeds {', '.join(map(str, seeds))}; mean over seeds, Δ = point "
        "− w = 0 per seed, mean [95 % t interval]. Network calls count both passes of a guided "
        "call; seconds are the sampling machine's (named in each provenance JSON), measured "
        "while other jobs ran. `uncond` (no label, same models) is the "
        f"floor: its accuracy is the mean share of its samples the oracle puts in each class; "
        f"the ceiling, the oracle on held-out real DNA of each class, is {ceiling:.3f}. Written "
        f"by `make figures` (analysis/guidance.py); per class and every column: "
        f"[reports/{SCALE}/guidance.md](reports/{SCALE}/guidance.md)."
    )
    splice_front(f"guidance:{SCALE}", front, note)
