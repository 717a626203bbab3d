"""Learning with ground truth: attained vs attainable bits/nt on synthetic DNA of known entropy,
per tokeniser and model variant, against CPU time.

Each cell trains one model on one synthetic set (``d3lm/data/synthetic.py``: ``copy``,
``markov``, ``motifs``) and reports its validation bound (``val/bpn``) at every validation, with
the process CPU seconds spent so far, beside references computed here: the set's exact entropy
(attainable) and a context-free model for that tokeniser (``bench/unigram_bound.py``): per-position
token frequencies fitted on the training split and scored on the validation split, as ``val/bpn``
is (the training split's plug-in entropy is shown too; it is biased low). ``closed`` is the
fraction of the gap between the context-free model and the exact entropy that the model closed:
0 = composition only, 1 = everything; below 0 it is worse than counting tokens.

    python bench/learnability.py                       # the default grid -> bench/results/
    python bench/learnability.py --tasks copy --tokenizers nt6mer kmer:3 --variants ntv2 tied_nuc

Cells already in ``--out`` (same task, tokeniser, variant, scale, steps) are skipped, and the CSV
is rewritten atomically after each cell, so an interrupted grid resumes.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import pandas as pd
import torch
from unigram_bound import context_free_bpn, plugin_bpn

import d3lm.data  # noqa: F401  (registers the synthetic sets)
from d3lm.config import load_config
from d3lm.data.tables import load_table
from d3lm.io import write_with
from d3lm.registry import DATASETS, TOKENIZERS
from d3lm.rundir import RunDir
from d3lm.stages.train import train
from d3lm.tokenizers import Tokenizer

#: Model variants: ``model.params`` embedding options, each set explicitly so that a scale's own
#: defaults cannot leak in (``ntv2`` is NT v2 exactly: untied, no nucleotide table).
VARIANTS: dict[str, dict[str, bool]] = {
    "ntv2": {"tie_embeddings": False, "nucleotide_embeddings": False},
    "tied": {"tie_embeddings": True, "nucleotide_embeddings": False},
    "nuc": {"tie_embeddings": False, "nucleotide_embeddings": True},
    "tied_nuc": {"tie_embeddings": True, "nucleotide_embeddings": True},
}


def tokenizer_overrides(spec: str) -> list[str]:
    """``nt6mer`` or ``kmer:K`` -> config overrides."""
    name, _, k = spec.partition(":")
    out = [f"tokenizer.name={name}"]
    return [*out, f"tokenizer.params.k={k}"] if k else out


def build_tokenizer(spec: str) -> Tokenizer:
    name, _, k = spec.partition(":")
    return TOKENIZERS.build(name, {"k": int(k)} if k else {})


def run_cell(args: argparse.Namespace, task: str, tok: str, variant: str) -> pd.DataFrame:
    name = f"{task}-{tok.replace(':', '')}-{variant}-{args.scale}-{args.steps}"
    overrides = [
        f"experiment={args.experiment}",
        f"run={name}",
        f"runs_dir={args.runs_dir}",
        f"data.dataset={task}",
        f"trainer.max_steps={args.steps}",
        f"trainer.val_check_interval={args.val_every}",
        "trainer.limit_val_batches=8",
        "trainer.enable_progress_bar=false",
        *tokenizer_overrides(tok),
        *(f"model.params.{k}={str(v).lower()}" for k, v in VARIANTS[variant].items()),
        *args.override,
    ]
    cfg = load_config(args.scale, [], overrides)
    run = RunDir.of(cfg)
    if run.last.exists():
        cfg.resume = str(run)  # an interrupted cell continues
    train(cfg)
    log = run.log()
    cpu = log[["step", "time/cpu_s"]].dropna().set_index("step")["time/cpu_s"]
    # a resumed cell may validate the same step twice: keep the last
    val = log[["step", "val/bpn"]].dropna().drop_duplicates("step", keep="last")
    return pd.DataFrame(
        {
            "task": task,
            "tokenizer": tok,
            "variant": variant,
            "scale": args.scale,
            "steps": args.steps,
            "step": val["step"].astype(int) + 1,
            "cpu_s": [float(cpu[cpu.index <= s].iloc[-1]) for s in val["step"]],
            "bpn": val["val/bpn"].to_numpy(),
        }
    )


def references(task: str, tok: str, cache_dir: Path) -> dict[str, float]:
    """The set's exact entropy and the two context-free references for one tokeniser."""
    table = load_table(task, cache_dir)
    train, valid = (table.loc[table["split"] == s, "sequence"].tolist() for s in ("train", "valid"))
    tokenizer = build_tokenizer(tok)
    return {
        "attainable": DATASETS.build(task).bits_per_nt(),
        "context_free_plugin": plugin_bpn(tokenizer, train),
        "context_free": context_free_bpn(tokenizer, train, valid),
    }


def with_references(grid: pd.DataFrame, cache_dir: Path) -> pd.DataFrame:
    """Add the references and ``closed``, the fraction of the gap from the held-out context-free
    model to the exact entropy that the model closed."""
    pairs = grid[["task", "tokenizer"]].drop_duplicates().itertuples(index=False)
    refs = pd.DataFrame(
        [{"task": t, "tokenizer": k, **references(t, k, cache_dir)} for t, k in pairs]
    )
    out = grid.drop(
        columns=[c for c in refs.columns if c in grid and c not in ("task", "tokenizer")]
    )
    out = out.drop(columns=["closed"], errors="ignore").merge(refs, on=["task", "tokenizer"])
    out["closed"] = (out["context_free"] - out["bpn"]) / (out["context_free"] - out["attainable"])
    return out


def summary(grid: pd.DataFrame) -> str:
    """One markdown row per cell: its last validation, and the CPU minutes to close half the gap."""
    lines = [
        "| task | tokeniser | variant | steps | CPU min | attained | attainable "
        "| context-free (held out / plug-in) | closed | CPU min to close half |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, cell in grid.groupby(["task", "tokenizer", "variant", "scale", "steps"], sort=False):
        last = cell.iloc[-1]
        half = cell[cell["closed"] >= 0.5]
        to_half = f"{half['cpu_s'].iloc[0] / 60:.1f}" if len(half) else "not reached"
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {key[4]} | {last['cpu_s'] / 60:.1f} | "
            f"{last['bpn']:.3f} | {last['attainable']:.3f} | {last['context_free']:.3f} / "
            f"{last['context_free_plugin']:.3f} | "
            f"{last['closed']:.2f} | {to_half} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["copy", "markov", "motifs"])
    parser.add_argument("--tokenizers", nargs="+", default=["nt6mer", "kmer:3", "kmer:1"])
    parser.add_argument("--variants", nargs="+", default=["ntv2", "tied_nuc"], choices=VARIANTS)
    parser.add_argument("--scale", default="tiny")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--val-every", type=int, default=25)
    parser.add_argument("--experiment", default="learnability")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--out", type=Path, default=Path("bench/results/learnability.csv"))
    parser.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    grid = pd.read_csv(args.out) if args.out.exists() else pd.DataFrame()
    for task in args.tasks:
        for tok in args.tokenizers:
            for variant in args.variants:
                key = (task, tok, variant, args.scale, args.steps)
                if (
                    len(grid)
                    and (
                        grid[["task", "tokenizer", "variant", "scale", "steps"]].apply(
                            tuple, axis=1
                        )
                        == key
                    ).any()
                ):
                    continue
                start = time.time()
                rows = run_cell(args, task, tok, variant)
                print(
                    f"{key}: {rows['bpn'].iloc[-1]:.3f} bits/nt ({time.time() - start:.0f} s wall)",
                    flush=True,
                )
                grid = pd.concat([grid, rows], ignore_index=True)
                write_with(args.out, lambda f, g=grid: g.to_csv(f, index=False))
    grid = with_references(grid, Path(".cache/d3lm"))
    write_with(args.out, lambda f: grid.to_csv(f, index=False))
    print(summary(grid))


if __name__ == "__main__":
    main()
