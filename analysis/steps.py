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
# # Denoising steps (paper Table 4)
#
# The paper's sampler (random order) with T steps; `per_token` is one step per sampled
# token. Any T at or above the token count (the `tokens` column) gives the same samples as
# `per_token`.
#
# Reads `results/ablation-steps-<SCALE>.csv` (written by `d3lm ablation steps`); writes
# `reports/<SCALE>/steps.md`, `.tex` and the figures as PNG and PDF. Cells are mean ± std over
# seeds; bold marks the best generated row of each column.

# %%
from figures import headline, metric_figure, save_figure
from tables import GENERATION_METRICS, load_results, summarise, write_table

AXES = ["steps"]
METRICS = GENERATION_METRICS

rows = load_results("steps", AXES)
summary = summarise(rows, AXES, METRICS)
md, tex = write_table(summary, METRICS, "steps", "steps", "Number of denoising steps T.")
print(md.read_text())

# %%
save_figure(metric_figure(rows, AXES, headline(rows), "point", ("real", "markov")), "steps")
