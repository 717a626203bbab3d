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
# `reports/<SCALE>/sampling.md`, `.tex` and the figures as PNG and PDF.
# Cells are the mean [95 % interval] over training seeds, with n and the oracle named under the
# table; every point is then paired by seed against the grid's reference point (the paper's
# setting) with a verdict, and the power lines say what would resolve a given difference.

# %%
from figures import headline, metric_figure, save_figure
from tables import load_results
from verdicts import write_report

AXES = ["sampler"]
METRICS = [
    "fd_sei",
    "kid_oracle",
    "fd_oracle",
    "fd_kmer",
    "gc_ratio_gc_at",
    "gc_ratio_g_c",
    "cpg_oe",
    "fraction_unique",
    "nearest_mean",
]

rows = load_results("sampling", AXES)
report = write_report(
    "sampling", rows, AXES, METRICS, "sampler", "Sampler presets (same trained models)."
)
print(report.markdown.read_text())

# %%
save_figure(metric_figure(report.rows, AXES, headline(report.rows), ("real", "markov")), "sampling")
save_figure(metric_figure(report.rows, AXES, "gc_ratio_gc_at", ("real",)), "sampling_gc")
