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
# # Samplers (paper Table 3)
#
# Every registered sampler preset on the same trained models, the GC ratio beside the
# Fréchet distances (a sampler can match k-mer statistics and still drift in GC content, as P2 does
# in the paper).
#
# Reads `results/ablation-sampling-<SCALE>.csv` (written by `d3lm ablation sampling`); writes
# `reports/<SCALE>/sampling.md`, `.tex` and the figures as PNG and PDF. Cells are mean ± std over
# seeds; bold marks the best generated row of each column.

# %%
from figures import headline, metric_figure, save_figure
from tables import load_results, summarise, write_table

AXES = ["sampler"]
METRICS = [
    "fd_sei",
    "fd_oracle",
    "fd_kmer",
    "gc_ratio_gc_at",
    "gc_ratio_g_c",
    "cpg_oe",
    "fraction_unique",
    "nearest_mean",
]

rows = load_results("sampling", AXES)
summary = summarise(rows, AXES, METRICS)
md, tex = write_table(
    summary, METRICS, "sampler", "sampling", "Sampler presets (same trained models)."
)
print(md.read_text())

# %%
save_figure(metric_figure(rows, AXES, headline(rows), "bar", ("real", "markov")), "sampling")
save_figure(metric_figure(rows, AXES, "gc_ratio_gc_at", "bar", ("real",)), "sampling_gc")
