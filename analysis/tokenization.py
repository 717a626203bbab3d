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
# # Tokenisation (paper Fig. 3b)
#
# NT v2's non-overlapping 6-mers against non-overlapping k-mers (k = 1..5) and a byte-pair
# tokeniser, each trained on the same batches of sequences for the same steps (equal compute in
# nucleotides seen). `val_bpn` is the validation bound in bits per nucleotide, comparable across
# tokenisers; the Fréchet distances and the GC ratio score the samples.
#
# Reads `results/ablation-tokenization-<SCALE>.csv` (from `d3lm ablation tokenization`);
# writes `reports/<SCALE>/tokenization.md`, `.tex` and the figures as PNG and PDF.
# Cells are the mean [95 % interval] over training seeds, with n and the oracle named under the
# table; every point is then paired by seed against the grid's reference point (the paper's
# setting) with a verdict, and the power lines say what would resolve a given difference.

# %%
from figures import headline, metric_figure, save_figure
from tables import GENERATION_METRICS, load_results
from verdicts import write_report

AXES = ["tokenizer"]
METRICS = ["val_bpn", *GENERATION_METRICS]

rows = load_results("tokenization", AXES)
report = write_report(
    "tokenization",
    rows,
    AXES,
    METRICS,
    "tokenizer",
    "Tokenisation at equal training compute (nucleotides seen).",
)
print(report.markdown.read_text())

# %%
save_figure(metric_figure(report.rows, AXES, "val_bpn", ()), "tokenization_bpn")
save_figure(
    metric_figure(report.rows, AXES, headline(report.rows), ("real", "markov")), "tokenization"
)
