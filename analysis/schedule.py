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
# # Noise schedule
#
# Linear, cosine, log-linear and polynomial alpha(t), trained with the continuous-time
# objective (the one that reads the schedule), sampled with the paper's sampler.
#
# Reads `results/ablation-schedule-<SCALE>.csv` (written by `d3lm ablation schedule`); writes
# `reports/<SCALE>/schedule.md`, `.tex` and the figures as PNG and PDF.
# Cells are the mean [95 % interval] over training seeds, with n and the oracle named under the
# table; every point is then paired by seed against the grid's reference point (the paper's
# setting) with a verdict, and the power lines say what would resolve a given difference.

# %%
from figures import headline, metric_figure, save_figure
from tables import GENERATION_METRICS, load_results
from verdicts import write_report

AXES = ["schedule"]
METRICS = ["val_bpn", *GENERATION_METRICS]

rows = load_results("schedule", AXES)
report = write_report("schedule", rows, AXES, METRICS, "schedule", "Noise schedules.")
print(report.markdown.read_text())

# %%
save_figure(metric_figure(report.rows, AXES, headline(report.rows), ("real", "markov")), "schedule")
