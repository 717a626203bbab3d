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
# # The paper's claims, decided (or not) by the suite's rows
#
# One row per claim of D3LM (arXiv 2603.01780) that the suite's grids re-examine: the paper's
# number, the suite's estimate with its 95 % interval, scale, n and seeds, and a verdict:
# **reproduced** (every seed-paired difference the claim predicts is significant in its
# direction), **contradicted** (one is significant the other way) or **undecided**, with the
# compute that would decide it from the measured spread (`d3lm.stats`).
#
# Reads `results/ablation-*-<SCALE>.csv` and `results/understanding-<SCALE>.csv`; writes
# `reports/<SCALE>/claims.md` (all seven rows) and, where the README (`D3LM_README`, default the
# repository's) has `claims:<SCALE>` markers, the rows that have results at this scale between them.

# %%
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tables import (
    DISPLAY_SCALE,
    GENERATED,
    TITLES,
    grid_reference,
    load_results,
    one_instrument,
    read_rows,
    settings,
    to_markdown,
)
from verdicts import paired, reference_label

from d3lm import stats
from d3lm.io import splice, write_text

_, REPORTS, SCALE = settings()
README = Path(os.environ.get("D3LM_README", Path(__file__).resolve().parents[1] / "README.md"))
#: How a claim's "Suite" cell starts when its grid has no rows at this scale.
NO_RESULTS = "no results"


@dataclass(frozen=True)
class Claim:
    text: str
    paper: str
    grid: str
    axis: str
    points: Callable[[str], bool]  # the grid points the claim says are worse than its reference


def headline(rows: pd.DataFrame) -> str:
    """KID on oracle features where the rows have it (unbiased at any n), else oracle FD."""
    return "kid_oracle" if "kid_oracle" in set(rows["metric"]) else "fd_oracle"


CLAIMS = [
    Claim(
        "Non-overlapping 6-mer tokens beat the other tokenisers",
        "6-mer best (Fig. 3b)",
        "tokenization",
        "tokenizer",
        lambda label: True,
    ),
    Claim(
        "Random unmasking order beats confidence-style orders",
        "random best of the orders (Table 3)",
        "sampling",
        "sampler",
        lambda label: label in ("confidence", "margin", "entropy"),
    ),
    Claim(
        "The planning sampler P2 collapses",
        "GC ratio 12.7 vs 1.06 real (Table 3)",
        "sampling",
        "sampler",
        lambda label: label == "p2",
    ),
    Claim(
        "More denoising steps help, up to T = 50",
        "T = 50 chosen (Table 4)",
        "steps",
        "steps",
        lambda label: label.isdigit() and int(label) < 50,
    ),
    Claim(
        "Temperature 1.1 is best",
        "1.1 chosen (Table 5)",
        "temperature",
        "temperature",
        lambda label: True,
    ),
    Claim(
        "D3LM beats an autoregressive model of the same size",
        "SFID 10.92 vs 29.16",
        "main",
        "model",
        lambda label: label == "autoregressive",
    ),
]


def claim_verdict(words: set[str], expected: str) -> str:
    """reproduced when every paired verdict is ``expected``, contradicted when one is the
    opposite, else (or with none) undecided."""
    opposite = stats.BETTER if expected == stats.WORSE else stats.WORSE
    if opposite in words:
        return "contradicted"
    return "reproduced" if words == {expected} else "undecided"


def decide(table: pd.DataFrame, worse: Sequence[str], metric: str) -> tuple[str, pd.DataFrame]:
    """The claim's verdict from the paired rows of the points it says are ``worse``."""
    mine = table[(table["metric"] == metric) & table["row"].isin(worse)]
    return claim_verdict(set(mine["verdict"]), stats.WORSE), mine


def interval_text(mean: float, low: float, high: float, scale: float) -> str:
    mean, low, high = mean * scale, low * scale, high * scale
    return f"{mean:+.3g}" if np.isnan(low) else f"{mean:+.3g} [{low:+.3g}, {high:+.3g}]"


def to_decide(rows: pd.DataFrame, metric: str, sd: float, scale: float) -> str:
    """The seeds that would resolve the smallest difference still open, at this n."""
    if rows.empty or np.isnan(sd):
        return "2 or more seeds (the spread over seeds is not measured yet)"
    effect = float(rows["mean"].abs().min()) * scale
    needed = stats.seeds_needed(effect, sd * scale)
    which = "more than 10,000 seeds" if needed is None else f"{needed} seeds"
    return f"{which} to resolve a difference of {effect:.2g} (80 % power)"


def claim_row(claim: Claim) -> dict[str, str]:
    try:
        rows = load_results(claim.grid, [claim.axis])
    except FileNotFoundError:
        return {
            "Claim": claim.text,
            "Paper": claim.paper,
            "Suite": f"{NO_RESULTS} for `{claim.grid}` yet",
            "Verdict": "undecided",
            "To decide": f"`make ablation-{claim.grid} SCALE={SCALE}`",
        }
    rows, instrument = one_instrument(rows, f"ablation-{claim.grid}")
    reference = grid_reference(claim.grid)
    metric = headline(rows)
    table = paired(rows, [claim.axis], reference, [metric, "gc_ratio_gc_at"])
    labels = [r for r in table["row"].unique() if claim.points(str(r))]
    verdict, mine = decide(table, labels, metric)
    scale = DISPLAY_SCALE.get(metric, 1.0)
    ref = reference_label(rows, [claim.axis], reference)
    cells = "; ".join(
        f"{r.row} − {ref}: {interval_text(r.mean, r.low, r.high, scale)} ({r.verdict})"
        for r in mine.itertuples()
    )
    if claim.grid == "sampling" and claim.points("p2"):  # the paper's number is a GC ratio
        gc = rows[(rows["metric"] == "gc_ratio_gc_at") & rows["sampler"].isin(["p2", None])]
        p2 = stats.seed_interval(gc.loc[gc["set"] == GENERATED, "value"].to_numpy())
        real = stats.seed_interval(gc.loc[gc["set"] == "real", "value"].to_numpy())
        cells += f"; GC ratio {p2.mean:.3g} vs real {real.mean:.3g}"
    sd = float(mine["sd"].median()) if len(mine) else np.nan
    return {
        "Claim": claim.text,
        "Paper": claim.paper,
        "Suite": f"Δ {TITLES.get(metric, metric)}: {cells} ({SCALE}; {instrument})",
        "Verdict": verdict,
        "To decide": "–" if verdict != "undecided" else to_decide(mine, metric, sd, scale),
    }


#: The task of the paper's understanding headline (MCC 0.947 against NT v2's 0.915).
HEADLINE_TASK = "splice_acceptor"


def understanding_row() -> dict[str, str]:
    """Diffusion pretraining against MLM on fine-tuning MCC, paired by task and seed."""
    text, paper = (
        "Diffusion pretraining beats MLM on fine-tuning MCC",
        "0.947 vs 0.915 (splice acceptor)",
    )
    try:
        rows = read_rows("understanding", "d3lm understanding", ["task", "init"])
    except FileNotFoundError:
        return {
            "Claim": text,
            "Paper": paper,
            "Suite": f"{NO_RESULTS} yet",
            "Verdict": "undecided",
            "To decide": f"`make table-understanding SCALE={SCALE}`",
        }
    test = rows[(rows["split"] == "test") & (rows["metric"] == "mcc")]
    cells, words, open_tasks = [], set(), {}
    for task, group in test.groupby("task", sort=False):
        by_init = {
            i: dict(zip(g["seed"].astype(int), g["value"], strict=True))
            for i, g in group.groupby("init")
        }
        if "diffusion" not in by_init or "mlm" not in by_init:
            continue
        diff = stats.paired_difference(by_init["diffusion"], by_init["mlm"])
        word = stats.verdict(diff, "max")
        words.add(word)
        seeds = sorted(set(by_init["diffusion"]) & set(by_init["mlm"]))
        per_seed = [by_init["diffusion"][s] - by_init["mlm"][s] for s in seeds]
        if len(per_seed) > 1 and word != stats.BETTER:
            open_tasks[task] = (abs(diff.mean), float(np.std(per_seed, ddof=1)))
        shown = interval_text(diff.mean, diff.low, diff.high, 1.0)
        cells.append(f"{task}: {shown} ({word}, {diff.seeds} seeds)")
    verdict = claim_verdict(words, stats.BETTER)
    decide_text = "–"
    if verdict == "undecided" and open_tasks:
        # the paper's headline task when it is still open, else the first open one
        task = HEADLINE_TASK if HEADLINE_TASK in open_tasks else next(iter(open_tasks))
        effect, sd = open_tasks[task]
        needed = stats.seeds_needed(effect, sd)
        which = "more than 10,000 seeds" if needed is None else f"{needed} seeds"
        decide_text = f"{task}: {which} to resolve its difference of {effect:.2g} (80 % power)"
    return {
        "Claim": text,
        "Paper": paper,
        "Suite": f"Δ test MCC, diffusion − MLM: {'; '.join(cells)} ({SCALE})",
        "Verdict": verdict,
        "To decide": decide_text,
    }


claims = pd.DataFrame([*map(claim_row, CLAIMS), understanding_row()]).set_index("Claim")
markdown = to_markdown(claims)
note = (
    f"Made by `make figures` (analysis/claims.py) from the committed rows in `results/` at "
    f"`{SCALE}`. Δ is point minus the paper's setting on the claim's axis (every other "
    f"setting, the sampling temperature included, is the scale's: "
    f"`experiments/scales/{SCALE}.yaml`), per training and sampling seed, mean "
    "[95 % t interval over seeds]; KID ×10³ on the fixed oracle's features."
)
write_text(REPORTS / "claims.md", f"# Paper claims ({SCALE})\n\n{markdown}\n\n{note}\n")
if README.exists() and f"<!-- claims:{SCALE} -->" in README.read_text():
    measured = claims[~claims["Suite"].str.startswith(NO_RESULTS)]
    unmeasured = claims.index.difference(measured.index, sort=False)
    rest = f" No rows yet at `{SCALE}` for: {'; '.join(unmeasured)}." if len(unmeasured) else ""
    splice(README, f"claims:{SCALE}", f"{to_markdown(measured)}\n\n{note}{rest}")
print(markdown)
