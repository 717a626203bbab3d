"""``d3lm sweep report``: the best trial, a trials table and Optuna's plots, as files.

Writes into ``out``: ``trials.csv`` (one row per trial: state, objective, parameters, run folder,
retried trial, duration, git revision), ``report.md`` (the best-trial line and the same table),
``history.png`` (objective by trial) and ``importance.png`` (fANOVA parameter importances, when
at least two complete trials differ in a parameter; otherwise ``report.md`` says why not).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pandas as pd
from optuna.exceptions import ExperimentalWarning
from optuna.study import Study, load_study
from optuna.trial import TrialState

from d3lm.errors import D3lmError
from d3lm.io import atomic_path, write_text
from d3lm.sweeps.storage import existing_storage


def trials_table(study: Study) -> pd.DataFrame:
    """One row per trial, parameters as columns; a retried trial names the one it repeats."""
    metric = study.user_attrs.get("metric", "value")
    rows = []
    for t in study.get_trials(deepcopy=False):
        value = t.value
        if value is None and t.state == TrialState.PRUNED and t.intermediate_values:
            value = t.intermediate_values[t.last_step]  # the bound it was pruned on
        duration = t.duration.total_seconds() if t.duration else math.nan
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                metric: value,
                **t.params,
                "run_dir": t.user_attrs.get("run_dir"),
                "retry_of": t.system_attrs.get("failed_trial"),
                "duration_s": round(duration, 1),
                "git": t.user_attrs.get("git"),
            }
        )
    return pd.DataFrame(rows)


def best_line(study: Study) -> str:
    """``best: trial N (run folder) metric = value; param=value, ...``."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return f"best: none of {len(study.trials)} trials completed"
    best = study.best_trial
    params = ", ".join(f"{k}={_cell(v)}" for k, v in best.params.items())
    metric = study.user_attrs.get("metric", "value")
    return (
        f"best: trial {best.number} ({best.user_attrs.get('run_dir')}) "
        f"{metric} = {best.value:.6g}; {params}"
    )


def markdown(frame: pd.DataFrame) -> str:
    """A GitHub table (no tabulate dependency); floats to 4 significant digits."""
    if frame.empty:
        return "(no trials yet)"
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = [
        "| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body])


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def save_plots(study: Study, out: Path) -> list[str]:
    """history.png and importance.png; returns lines that name the plots drawn and say why any
    was not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    metric = study.user_attrs.get("metric", "Objective Value")
    notes = []
    with warnings.catch_warnings():
        # Optuna's plots are experimental, and an empty history has no legend to draw
        warnings.simplefilter("ignore", ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)
        plots = {
            "history.png": lambda: vis.plot_optimization_history(study, target_name=metric),
            "importance.png": lambda: vis.plot_param_importances(study, target_name=metric),
        }
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        varying = {
            name
            for name in {k for t in complete for k in t.params}
            if len({repr(t.params.get(name)) for t in complete}) > 1
        }
        if len(complete) < 2 or not varying:
            del plots["importance.png"]
            notes.append(
                f"importance.png: not drawn, {len(complete)} complete trial(s) with "
                f"{len(varying)} varying parameter(s) (needs 2 and 1)"
            )
        for name, draw in plots.items():
            axes = draw()
            with atomic_path(out / name) as tmp:
                axes.figure.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
            plt.close(axes.figure)
    return [f"Plots: {', '.join(plots)}.", *notes]


def report(study_name: str, storage_url: str, out: Path) -> str:
    """Write the report files into ``out``; return the text of report.md."""
    try:
        study = load_study(study_name=study_name, storage=existing_storage(storage_url))
    except KeyError:
        raise D3lmError(f"{storage_url}: no study named {study_name!r}") from None
    frame = trials_table(study)
    with atomic_path(out / "trials.csv") as tmp:
        frame.to_csv(tmp, index=False)
    plots = save_plots(study, out)
    text = "\n\n".join(
        [f"# Sweep {study_name}", best_line(study), markdown(frame), "\n".join(plots)]
    )
    write_text(out / "report.md", text + "\n")
    return text
