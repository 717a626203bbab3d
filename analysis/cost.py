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
# # Sampling cost against quality
#
# The paper's exact sampler (random order, T = 50) against cheaper draws from the same models:
# fewer steps, confidence-threshold counts, the approximate key/value cache (dKV), bf16 autocast.
# Cost columns: network calls per sequence (`nfe`, machine-independent) and wall seconds per
# 1,000 sequences on the machine that sampled (its provenance JSON beside each FASTA names it).
#
# Reads `results/ablation-cost-<SCALE>.csv` (written by `d3lm ablation cost`); writes
# `reports/<SCALE>/cost.md`, `.tex` and the Pareto figure (quality against cost) as PNG and PDF.
# Every point is paired by seed against `exact`: a faster point whose interval contains zero is
# indistinguishable from the exact sampler at this n and seed count; one that is worse says by
# how much.

# %%
from figures import headline, pareto_figure, save_figure
from tables import GENERATION_METRICS, load_results, settings
from verdicts import front_table, has_front, splice_front, write_report

AXES = ["config"]
COSTS = ["nfe", "sample_s_per_1000"]

rows = load_results("cost", AXES)
metrics = [m for m in COSTS if m in set(rows["metric"])] + GENERATION_METRICS
caption = "Sampling cost against quality: cheaper samplers paired against the exact one."
report = write_report("cost", rows, AXES, metrics, "sampler", caption)
print(report.markdown.read_text())

# %%
cost = next((m for m in reversed(COSTS) if m in set(report.rows["metric"])), None)
if cost is None:
    print("no cost columns in these rows (sampled before provenance was recorded)")
else:
    save_figure(pareto_figure(report.rows, AXES, headline(report.rows), cost), "cost")

# %% [markdown]
# The README's cost table (between its `cost:<SCALE>` markers): per point its cost (means over
# seeds) and the seed-paired oracle and k-mer differences from `exact`, with their verdicts.

# %%
_, _, SCALE = settings()
if set(COSTS) <= set(report.rows["metric"]) and has_front(f"cost:{SCALE}"):
    seeds = sorted(report.rows["seed"].dropna().astype(int).unique())
    n = int(report.rows.loc[report.rows["metric"] == "nfe", "n"].max())
    table = front_table(
        report,
        AXES,
        "sampler",
        {
            "nfe": ("network calls / seq.", "{mean:.0f}"),
            "sample_s_per_1000": ("s / 1,000 seq.", "{mean:.0f}"),
        },
        {"kid_oracle": "Δ KID oracle ×10³", "fd_oracle": "Δ FD oracle", "fd_kmer": "Δ FD k-mer"},
    )
    note = (
        f"`make ablation-cost` at `{SCALE}`: n = {n:,} samples per point, training seeds "
        f"{', '.join(map(str, seeds))}; mean cost over seeds (wall seconds on the machine that "
        "sampled, named in its provenance JSON, while other jobs ran: BENCHMARKS.md times the "
        "points interleaved), Δ = point − exact per seed, mean [95 % t interval]. "
        f"Written by `make figures` (analysis/cost.py); the full table is "
        f"[reports/{SCALE}/cost.md](reports/{SCALE}/cost.md)."
    )
    splice_front(f"cost:{SCALE}", table, note)
