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
# # Understanding: fine-tuning MCC by pretraining objective
#
# Each row is one initialisation of the same backbone (random; a masked-diffusion model; an MLM
# model pretrained at equal compute; any extra checkpoint of the grid), fine-tuned on each task;
# cells are the test-split MCC of the checkpoint with the best validation MCC, mean ± std over
# seeds. The second table is what pretraining adds: MCC minus that of the randomly initialised
# model with the same task and seed.
#
# Reads `results/understanding-<SCALE>.csv` (written by `d3lm understanding`); writes
# `reports/<SCALE>/understanding.md|.tex`, `understanding_gain.md|.tex` and the figure
# `understanding.png|.pdf`.

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from figures import save_figure
from tables import interval_of, read_rows, t_interval, write_table

RANDOM = "random"
rows = read_rows("understanding", "d3lm understanding", ["task", "init"])
test = rows[(rows["split"] == "test") & (rows["metric"] == "mcc")]
tasks = list(dict.fromkeys(test["task"]))
inits = [RANDOM, *(i for i in dict.fromkeys(test["init"]) if i != RANDOM)]


def summary_of(frame: pd.DataFrame, row_order: list[str]) -> pd.DataFrame:
    """The (row, metric) summary the table writer takes: rows are inits, "metrics" tasks, each
    cell the mean and 95 % t interval over seeds."""
    stats = pd.DataFrame(
        [
            {"row": init, "metric": task, **interval_of(group, task)}
            for (init, task), group in frame.groupby(["init", "task"])
        ]
    )
    return stats.assign(
        row=pd.Categorical(stats["row"], categories=row_order, ordered=True), generated=True
    ).sort_values("row")


md, tex = write_table(
    summary_of(test, inits),
    tasks,
    "init",
    "understanding",
    "Test MCC after fine-tuning, by initialisation of the same backbone.",
    goals=dict.fromkeys(tasks, "max"),
)
print(md.read_text())

# %% [markdown]
# Paired by seed: what each pretrained initialisation adds over random weights (positive: it
# helps).

# %%
base = test[test["init"] == RANDOM].set_index(["task", "seed"])["value"]
pretrained = test[test["init"] != RANDOM]
gain = pretrained.assign(
    value=pretrained["value"].to_numpy()
    - base.reindex(list(zip(pretrained["task"], pretrained["seed"], strict=True))).to_numpy()
).dropna(subset=["value"])
if not gain.empty:
    md, tex = write_table(
        summary_of(gain, [i for i in inits if i != RANDOM]),
        tasks,
        "init",
        "understanding_gain",
        "Test MCC minus that of the randomly initialised model (same task and seed).",
        goals=dict.fromkeys(tasks, "max"),
    )
    print(md.read_text())

# %%
sns.set_theme(style="whitegrid", context="paper")
fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(tasks) + 1.5), 3.2))
common = {"data": test, "x": "task", "y": "value", "hue": "init", "order": tasks, "ax": ax}
sns.stripplot(**common, hue_order=inits, dodge=True, jitter=False, alpha=0.5, size=3, legend=False)
sns.pointplot(
    **common, hue_order=inits, dodge=0.53, errorbar=t_interval, linestyle="none", capsize=0.1
)
ax.set_xlabel("task")
ax.set_ylabel("test MCC")
ax.legend(title="init", frameon=False, fontsize="small")
fig.tight_layout()
save_figure(fig, "understanding")
