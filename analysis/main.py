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
# # Main table: D3LM against an autoregressive model
#
# Masked diffusion (D3LM) and an autoregressive model on the same backbone, data and steps,
# beside held-out real DNA and the order-5 Markov, dinucleotide-shuffle and uniform baselines at
# equal n. SFID (`fd_sei`) appears when the grid ran with a Sei weights file.
#
# Reads `results/ablation-main-<SCALE>.csv` (written by `d3lm ablation main`); writes
# `reports/<SCALE>/main.md`, `.tex` and the figures as PNG and PDF.
# Cells are the mean [95 % interval] over training seeds, with n and the oracle named under the
# table; every point is then paired by seed against the grid's reference point (the paper's
# setting) with a verdict, and the power lines say what would resolve a given difference.

# %%
from figures import headline, metric_figure, save_figure
from tables import load_results
from verdicts import write_report

AXES = ["model"]
METRICS = [
    "fd_sei",
    "kid_oracle",
    "fd_oracle",
    "fd_kmer",
    "gc_ratio_gc_at",
    "mean_hamming",
    "fraction_unique",
    "nearest_mean",
    "fraction_copies",
]

rows = load_results("main", AXES)
report = write_report(
    "main",
    rows,
    AXES,
    METRICS,
    "model",
    "D3LM against an autoregressive model, with real DNA and baselines.",
)
print(report.markdown.read_text())

# %%
save_figure(
    metric_figure(
        report.rows, AXES, headline(report.rows), ("real", "markov", "shuffle", "uniform")
    ),
    "main",
)
