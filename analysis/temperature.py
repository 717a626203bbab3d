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
# `reports/<SCALE>/temperature.md`, `.tex` and the figures as PNG and PDF. Cells are mean ± std over
# seeds; bold marks the best generated row of each column.

# %%
from figures import headline, metric_figure, save_figure
from tables import GENERATION_METRICS, load_results, summarise, write_table

AXES = ["temperature"]
METRICS = GENERATION_METRICS

rows = load_results("temperature", AXES)
summary = summarise(rows, AXES, METRICS)
md, tex = write_table(summary, METRICS, "temperature", "temperature", "Sampling temperature.")
print(md.read_text())

# %%
save_figure(metric_figure(rows, AXES, headline(rows), "point", ("real", "markov")), "temperature")
