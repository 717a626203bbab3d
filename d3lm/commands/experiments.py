"""Commands over many runs: ablation grids, the understanding grid, sweeps; fine-tuning."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from d3lm.commands.table import (
    CACHE,
    COUNT,
    POSITIVE,
    Command,
    arg,
    grid_args,
)
from d3lm.errors import D3lmError
from d3lm.interrupt import at
from d3lm.io import check_folder, check_not_inputs


def ablation(args: argparse.Namespace) -> None:
    from d3lm.experiments.ablation import Plan, load_grid, run_grid
    from d3lm.experiments.grid import Shard

    plan = Plan(load_grid(args.grid, args.seeds), args.scale, args.overrides, args.sei_weights)
    with at("the grid stopped outside training; trained runs and scored points are kept"):
        run_grid(plan, dry_run=args.dry_run, shard=Shard.parse(args.shard), rescore=args.rescore)


def understanding(args: argparse.Namespace) -> None:
    from d3lm.experiments.grid import Shard
    from d3lm.experiments.understanding import (
        GRID,
        UnderstandingPlan,
        load_grid,
        run_understanding,
    )

    grid, overrides = args.grid, list(args.overrides)
    if grid and "=" in grid:  # `d3lm understanding key=value`: no grid file given
        grid, overrides = None, [grid, *overrides]
    plan = UnderstandingPlan(load_grid(grid or GRID, args.seeds), args.scale, overrides)
    with at("the grid stopped outside training; trained runs and finished points are kept"):
        run_understanding(plan, dry_run=args.dry_run, shard=Shard.parse(args.shard))


def sweep(args: argparse.Namespace) -> str | None:
    if args.space == "report":
        from d3lm.sweeps.report import report

        if args.overrides:
            raise D3lmError(f"sweep report takes no key=value overrides: {args.overrides}")
        out = args.out or Path("reports/sweeps") / args.study
        check_folder(out)
        return report(args.study, args.storage, out)
    from d3lm.sweeps import load_space, run_worker

    if args.n_trials is None:
        raise D3lmError("sweep: --n-trials N is required to run a sweep")
    with at(f"the worker stopped outside a trial of study {args.study}"):
        run_worker(
            load_space(args.space, args.overrides, args.from_run),
            args.study,
            args.storage,
            args.n_trials,
            args.overrides,
            worker=args.worker,
            heartbeat=args.heartbeat,
            grace=args.grace,
            max_retry=args.max_retry,
        )
    return None


def finetune(args: argparse.Namespace) -> str:
    from d3lm.stages.finetune import finetune, load_finetune_config, summary

    return summary(finetune(load_finetune_config(args.config, args.overrides)))


def predict(args: argparse.Namespace) -> Path:
    from d3lm.stages.predict import best_checkpoint, predict

    checkpoint = best_checkpoint(args.run)
    check_not_inputs({"--out": args.out}, {"--data": args.data, "the checkpoint": checkpoint})
    with at(f"predicting {args.data} stopped, {args.out} not written"):
        return predict(args.run, args.data, args.out, args.batch_size, args.cache_dir)


COMMANDS: tuple[Command, ...] = (
    Command(
        "ablation",
        "run an ablation grid: train, sample, evaluate, tidy rows",
        ablation,
        (
            arg("grid", help="grid name (experiments/ablations/<grid>.yaml) or a YAML file"),
            *grid_args("training points"),
            arg("--sei-weights", help="a Sei checkpoint: adds SFID (fd_sei) to every point"),
            arg(
                "--rescore",
                action="store_true",
                help="score every sampled point again (after a metric or oracle change); train "
                "and sample nothing",
            ),
            arg("overrides", nargs="*", metavar="key=value", help="for every point"),
        ),
    ),
    Command(
        "sweep",
        "Optuna sweep worker (SPACE.yaml), or `report`; see docs/sweeps-and-cluster.md",
        sweep,
        (
            arg("space", help="search-space YAML (sweeps/<name>.yaml), or `report`"),
            arg("--study", required=True, help="study name; trials go to runs/<study>/"),
            arg(
                "--storage",
                required=True,
                help="sqlite:///FILE, journal:///FILE or postgresql://...",
            ),
            arg("--n-trials", type=POSITIVE, help="stop when the study has N finished trials"),
            arg(
                "--worker",
                type=int,
                default=int(os.environ.get("SLURM_ARRAY_TASK_ID", 0)),
                help="worker index, added to the sampler seed (default: $SLURM_ARRAY_TASK_ID or 0)",
            ),
            arg("--heartbeat", type=POSITIVE, default=60, help="seconds between heartbeats"),
            arg(
                "--grace", type=POSITIVE, help="seconds without heartbeat before a trial is failed"
            ),
            arg("--max-retry", type=COUNT, default=3, help="retries of a killed trial"),
            arg(
                "--from-run", type=Path, help="sample this trained run in every trial (no training)"
            ),
            arg("--out", type=Path, help="report folder (default reports/sweeps/<study>)"),
            arg("overrides", nargs="*", metavar="key=value", help="for every trial"),
        ),
    ),
    Command(
        "finetune",
        "fine-tune a checkpoint (or random init) on a labelled task",
        finetune,
        (
            arg(
                "--config",
                action="append",
                default=[],
                metavar="FILE",
                help="YAML layers on finetune.yaml",
            ),
            arg("overrides", nargs="*", metavar="key=value", help="experiments/finetune.yaml keys"),
        ),
    ),
    Command(
        "understanding",
        "pretrain per objective, fine-tune every init on every task and seed: MCC rows",
        understanding,
        (
            arg("grid", nargs="?", help="grid file (default experiments/understanding.yaml)"),
            *grid_args("fine-tuning points (and the pretraining they need)"),
            arg("overrides", nargs="*", metavar="key=value", help="for every pretraining run"),
        ),
    ),
    Command(
        "predict",
        "class probabilities of sequences under a fine-tuned run",
        predict,
        (
            arg("run", type=Path, help="fine-tuning run folder (its best checkpoint)"),
            arg("--data", type=Path, required=True, help="sequence file; labels optional"),
            arg("--out", type=Path, required=True, help="CSV: name, p_<class>..., predicted"),
            arg("--batch-size", type=POSITIVE, default=256),
            CACHE,
        ),
    ),
)
