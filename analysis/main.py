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
# `reports/<SCALE>/main.md`, `.tex` and the figures as PNG and PDF. Cells are mean ± std over
# seeds; bold marks the best generated row of each column.

# %%
from figures import headline, metric_figure, save_figure
from tables import load_results, summarise, write_table

AXES = ["model"]
METRICS = [
    "fd_sei",
    "fd_oracle",
    "fd_kmer",
    "gc_ratio_gc_at",
    "mean_hamming",
    "fraction_unique",
    "nearest_mean",
    "fraction_copies",
]

rows = load_results("main", AXES)
summary = summarise(rows, AXES, METRICS)
md, tex = write_table(
    summary,
    METRICS,
    "model",
    "main",
    "D3LM against an autoregressive model, with real DNA and baselines.",
)
print(md.read_text())

# %%
save_figure(
    metric_figure(rows, AXES, headline(rows), "bar", ("real", "markov", "shuffle", "uniform")),
    "main",
)
