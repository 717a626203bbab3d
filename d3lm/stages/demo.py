"""The demo: train, sample and evaluate one run, and say whether it learned."""

from __future__ import annotations

import pandas as pd
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from d3lm.stages.sample import sample
from d3lm.stages.score import GENERATED, evaluate
from d3lm.stages.train import train

#: The columns the demo prints, in order.
DEMO_COLUMNS = [
    "gc_content",
    "cpg_oe",
    "js_k4",
    "js_k6",
    "fd_kmer",
    "fd_oracle",
    "motif_corr",
    "fraction_unique",
    "nearest_mean",
]


def demo_report(rows: pd.DataFrame) -> str:
    """The demo's table plus the learning check of the core issue: the generated set's 4-mer JS
    divergence is at most a third of uniform random DNA's, and its CpG o/e within 0.15 of real."""
    table = rows.pivot(index="run", columns="metric", values="value")
    table = table.loc[list(dict.fromkeys(rows["run"])), [c for c in DEMO_COLUMNS if c in table]]
    gen, real, uniform = (table.loc[name] for name in (GENERATED, "real", "uniform"))
    js_ok = gen["js_k4"] <= uniform["js_k4"] / 3
    cpg_ok = abs(gen["cpg_oe"] - real["cpg_oe"]) <= 0.15
    return "\n".join(
        [
            table.to_string(float_format=lambda v: f"{v:.4g}"),
            "",
            f"4-mer JS(generated) / JS(uniform) = {gen['js_k4'] / uniform['js_k4']:.3f} "
            f"(learned: <= 1/3) {'ok' if js_ok else 'NOT MET'}",
            f"|CpG o/e(generated) - CpG o/e(real)| = {abs(gen['cpg_oe'] - real['cpg_oe']):.3f} "
            f"(learned: <= 0.15) {'ok' if cpg_ok else 'NOT MET'}",
        ]
    )


def demo(cfg: DictConfig) -> str:
    """Train, sample and evaluate one run; return the printable report. Under DDP every
    process trains and process 0 alone samples, evaluates and writes the files."""
    run_dir = train(cfg)
    if rank_zero_only.rank != 0:
        return f"run: {run_dir}"
    sample(cfg, run_dir)
    return f"run: {run_dir}\n\n" + demo_report(evaluate(cfg, run_dir))
