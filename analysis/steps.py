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
# `reports/<SCALE>/steps.md`, `.tex` and the figures as PNG and PDF.
# Cells are the mean [95 % interval] over training seeds, with n and the oracle named under the
# table; every point is then paired by seed against the grid's reference point (the paper's
# setting) with a verdict, and the power lines say what would resolve a given difference.

# %%
from figures import headline, metric_figure, save_figure
from tables import GENERATION_METRICS, load_results
from verdicts import write_report

AXES = ["steps"]
METRICS = GENERATION_METRICS

rows = load_results("steps", AXES)
report = write_report("steps", rows, AXES, METRICS, "steps", "Number of denoising steps T.")
print(report.markdown.read_text())

# %%
save_figure(metric_figure(report.rows, AXES, headline(report.rows), ("real", "markov")), "steps")
