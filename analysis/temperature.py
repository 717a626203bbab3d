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
# # Sampling temperature (paper Table 5)
#
# The paper's sampler (random order, T = 50) at temperatures from 0.7 to 1.5.
#
# Reads `results/ablation-temperature-<SCALE>.csv` (written by `d3lm ablation temperature`); writes
# `reports/<SCALE>/temperature.md`, `.tex` and the figures as PNG and PDF.
# Cells are the mean [95 % interval] over training seeds, with n and the oracle named under the
# table; every point is then paired by seed against the grid's reference point (the paper's
# setting) with a verdict, and the power lines say what would resolve a given difference.

# %%
from figures import headline, metric_figure, save_figure
from tables import GENERATION_METRICS, load_results
from verdicts import write_report

AXES = ["temperature"]
METRICS = GENERATION_METRICS

rows = load_results("temperature", AXES)
report = write_report("temperature", rows, AXES, METRICS, "temperature", "Sampling temperature.")
print(report.markdown.read_text())

# %%
save_figure(
    metric_figure(report.rows, AXES, headline(report.rows), ("real", "markov")), "temperature"
)
