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
# `reports/<SCALE>/schedule.md`, `.tex` and the figures as PNG and PDF. Cells are mean ± std over
# seeds; bold marks the best generated row of each column.

# %%
from figures import headline, metric_figure, save_figure
from tables import GENERATION_METRICS, load_results, summarise, write_table

AXES = ["schedule"]
METRICS = ["val_bpn", *GENERATION_METRICS]

rows = load_results("schedule", AXES)
summary = summarise(rows, AXES, METRICS)
md, tex = write_table(summary, METRICS, "schedule", "schedule", "Noise schedules.")
print(md.read_text())

# %%
save_figure(metric_figure(rows, AXES, headline(rows), "bar", ("real", "markov")), "schedule")
