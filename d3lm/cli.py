"""The ``d3lm`` command: a thin layer that parses arguments and calls the runner's stages."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig

from d3lm.config import load_config, load_run_config
from d3lm.errors import D3lmError
from d3lm.interrupt import Interrupted, at, signals
from d3lm.io import check_folder, check_not_inputs
from d3lm.oracle.train import OracleConfig
from d3lm.params import SEED, Range, integer_at_least
from d3lm.plugins import check_config, load_plugins

CACHE_DIR = ".cache/d3lm"


def _config(args: argparse.Namespace) -> DictConfig:
    return load_config(args.scale, args.config, args.overrides)


def cmd_plugins(args: argparse.Namespace) -> None:
    from d3lm.plugins import catalogue

    plugins = catalogue()
    if args.json:
        print(json.dumps(plugins, indent=2))
        return
    for kind, entries in plugins.items():
        print(f"{kind}:")
        for name, doc in entries.items():
            print(f"  {name:<20} {doc}")


def cmd_data_prepare(args: argparse.Namespace) -> None:
    from d3lm.data.recipes import prepare
    from d3lm.registry import TASKS

    params = {}
    for item in args.params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise D3lmError(f"{item!r}: expected key=value (a parameter of {args.name})")
        params[key] = yaml.safe_load(value)
    check_folder(args.cache_dir)
    if args.name in TASKS:
        print(TASKS.build(args.name, params).prepare(Path(args.cache_dir)))
    else:
        print(prepare(args.name, Path(args.cache_dir), params or None))


def cmd_train(args: argparse.Namespace) -> None:
    from d3lm import runner

    resume = [o.split("=", 1)[1] for o in args.overrides if o.startswith("resume=")]
    if resume:
        rest = [o for o in args.overrides if not o.startswith("resume=")]
        cfg = load_run_config(Path(resume[-1]), rest)
        cfg.resume = resume[-1]
    else:
        cfg = _config(args)
    check_config(cfg)
    try:
        print(runner.train(cfg))
    except Interrupted as err:
        if err.run_dir is not None and not cfg.run and not cfg.resume:
            err.extra.append(f"run={err.run_dir.name}")  # the same command, in the same folder
        raise


def cmd_sample(args: argparse.Namespace) -> None:
    from d3lm import runner

    # a key under a top-level config section (sample.seed=1) is a config key; anything else
    # (steps=25, order_params.noise=1) is a sampler parameter
    sections = set(load_config())
    dotted = [o for o in args.overrides if o.split("=", 1)[0].split(".", 1)[0] in sections]
    params = [f"sample.sampler.params.{o}" for o in args.overrides if o not in dotted]
    given = (("n", args.n), ("bp", args.bp), ("workers", args.workers))
    extra = [f"sample.{k}={v}" for k, v in given if v is not None]
    if args.sampler:
        extra.append(f"sample.sampler.name={args.sampler}")
    run = Path(args.run)
    cfg = load_run_config(run, [*dotted, *extra, *params])
    check_config(cfg)
    out = args.out or run / "samples.fasta"
    inputs = {
        "the checkpoint": run / "checkpoints" / "last.ckpt",
        "the config": run / "config.yaml",
    }
    check_not_inputs({"--out": out, "--trace": args.trace}, inputs)
    with at(f"sampling from {run} stopped, {out} not written"):
        print(runner.sample(cfg, run, out=out, trace=args.trace))


def _integer(wanted: Range) -> Callable[[str], int]:
    """argparse type: an integer in range ``wanted`` (argparse names the option in its error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not wanted.ok(value):
            raise argparse.ArgumentTypeError(f"{value} is not {wanted.wanted}")
        return value

    return parse


_positive = _integer(integer_at_least(1))
_count = _integer(integer_at_least(0))
_seed = _integer(SEED)


def _plugin_params(names: Sequence[str], pairs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``NAME.KEY=VALUE`` pairs (values parsed as YAML) -> {name: {key: value}} for ``names``."""
    params: dict[str, dict[str, Any]] = {name: {} for name in names}
    for pair in pairs:
        target, equals, value = pair.partition("=")
        name, _, key = target.partition(".")
        if name not in params or not key or not equals:
            raise D3lmError(f"{pair!r}: expected NAME.KEY=VALUE with NAME one of {list(params)}")
        if not key.isidentifier():
            raise D3lmError(f"{pair!r}: {key!r} is not a parameter name")
        params[name][key] = yaml.safe_load(value)
    return params


def cmd_evaluate(args: argparse.Namespace) -> None:
    from d3lm.evaluate import EvaluateOptions, evaluate_fasta, metric_table

    options = EvaluateOptions(
        features=_plugin_params(args.features, args.feature_param),
        baselines=_plugin_params(args.baselines, args.baseline_param),
        split=args.split,
        train_split=args.train_split,
        motifs=not args.no_motifs,
        seed=args.seed,
        progress=not args.no_progress,
        allow_lengths=args.allow_lengths,
    )
    out = args.out or args.samples.parent
    outputs = {"--out": out, "the output": out / "metrics.json", "the rows": out / "metrics.csv"}
    check_not_inputs(outputs, {"--samples": args.samples, "--reference": args.reference})
    with at(f"evaluating {args.samples} stopped, nothing written to {out}"):
        rows = evaluate_fasta(args.samples, args.reference, out, Path(args.cache_dir), options)
    print(metric_table(rows).to_string(float_format=lambda v: f"{v:.4g}"))


def cmd_oracle_train(args: argparse.Namespace) -> None:
    from d3lm.oracle.datasets import oracle_train

    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(OracleConfig)}
    print(
        json.dumps(
            oracle_train(args.dataset, Path(args.cache_dir), OracleConfig(**fields)), indent=2
        )
    )


def cmd_precision(args: argparse.Namespace) -> None:
    import torch

    from d3lm.precision import cpu_probe, resolve

    if not args.no_cache:
        check_folder(args.cache_dir)
    probe = cpu_probe(None if args.no_cache else Path(args.cache_dir))
    print(
        f"{probe.size}x{probe.size} matmul, {torch.get_num_threads()} threads: "
        f"fp32 {probe.fp32_s * 1e3:.2f} ms, bf16 {probe.bf16_s * 1e3:.2f} ms "
        f"(torch {probe.torch})"
    )
    print(f"cpu: {probe.choice().line()}")
    if torch.cuda.is_available():
        print(f"cuda: {resolve('auto', 'cuda', None).line()}")


def cmd_demo(args: argparse.Namespace) -> None:
    from d3lm import runner

    cfg = _config(args)
    check_config(cfg)
    print(runner.demo(cfg))


def cmd_ablation(args: argparse.Namespace) -> None:
    from d3lm.ablation import Plan, Shard, load_grid, run_grid

    plan = Plan(load_grid(args.grid, args.seeds), args.scale, args.overrides, args.sei_weights)
    with at("the grid stopped outside training; trained runs and scored points are kept"):
        shard = Shard.parse(args.shard)
        run_grid(plan, dry_run=args.dry_run, shard=shard, rescore=args.rescore)


def cmd_sweep(args: argparse.Namespace) -> None:
    if args.space == "report":
        from d3lm.sweeps.report import report

        if args.overrides:
            raise D3lmError(f"sweep report takes no key=value overrides: {args.overrides}")
        out = args.out or Path("reports/sweeps") / args.study
        check_folder(out)
        print(report(args.study, args.storage, out))
        return
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


def cmd_import_nt(args: argparse.Namespace) -> None:
    from d3lm.interop.nt_v2 import import_nt, write_run

    check_not_inputs({"--out": args.out}, {"the input folder": args.directory})
    check_folder(args.out)
    print(write_run(import_nt(args.directory), args.out))


def cmd_export_nt(args: argparse.Namespace) -> None:
    from d3lm import runner
    from d3lm.interop.nt_v2 import export_nt

    path = args.checkpoint if args.checkpoint.is_file() else runner.last_checkpoint(args.checkpoint)
    check_not_inputs({"--out": args.out}, {"the checkpoint": args.checkpoint, "its file": path})
    check_folder(args.out)
    print(export_nt(runner.read_checkpoint(path), args.out, args.format, source=path))


def cmd_finetune(args: argparse.Namespace) -> None:
    from d3lm.finetune import finetune, load_finetune_config, summary

    print(summary(finetune(load_finetune_config(args.config, args.overrides))))


def cmd_understanding(args: argparse.Namespace) -> None:
    from d3lm.ablation import Shard
    from d3lm.understanding import GRID, UnderstandingPlan, load_grid, run_understanding

    overrides = list(args.overrides)
    if args.grid and "=" in args.grid:  # `d3lm understanding key=value`: no grid file given
        args.grid, overrides = None, [args.grid, *overrides]
    grid = load_grid(args.grid or GRID, args.seeds)
    plan = UnderstandingPlan(grid, args.scale, overrides)
    with at("the grid stopped outside training; trained runs and finished points are kept"):
        run_understanding(plan, dry_run=args.dry_run, shard=Shard.parse(args.shard))


def cmd_predict(args: argparse.Namespace) -> None:
    from d3lm.finetune import best_checkpoint, predict

    check_not_inputs(
        {"--out": args.out}, {"--data": args.data, "the checkpoint": best_checkpoint(args.run)}
    )
    with at(f"predicting {args.data} stopped, {args.out} not written"):
        print(predict(args.run, args.data, args.out, args.batch_size, args.cache_dir))


def _grid_options(parser: argparse.ArgumentParser, points: str) -> None:
    """The options every grid command shares: scale, seeds, dry run and sharding."""
    parser.add_argument("--scale", help="experiments/scales/<SCALE>.yaml on top of base.yaml")
    parser.add_argument("--seeds", type=_positive, help="seeds 0..N-1 instead of the grid's")
    parser.add_argument("--dry-run", action="store_true", help="print the points, done or missing")
    parser.add_argument(
        "--shard",
        default="0/1",
        metavar="I/N",
        help=f"only {points} I, I+N, I+2N, ... (parallel workers, e.g. a SLURM array)",
    )


def _with_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", help="experiments/scales/<SCALE>.yaml on top of base.yaml")
    parser.add_argument(
        "--config", action="append", default=[], metavar="FILE", help="more YAML layers, in order"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="d3lm", description=__doc__)
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an input error too"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plugins", help="list registered plugins by kind")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    data = sub.add_parser("data", help="datasets").add_subparsers(dest="action", required=True)
    p = data.add_parser(
        "prepare", help="download and convert a named dataset or labelled task to parquet"
    )
    p.add_argument("name", help="a dataset recipe or a task (d3lm plugins)")
    p.add_argument("params", nargs="*", metavar="key=value", help="e.g. length=200")
    p.add_argument("--cache-dir", default=CACHE_DIR)
    p.set_defaults(func=cmd_data_prepare)

    p = sub.add_parser("train", help="train a model; resume=RUN_DIR continues a run")
    _with_config_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="generate sequences from a trained run into FASTA")
    p.add_argument("run", help="run folder (runs/<experiment>/<run>)")
    p.add_argument("--sampler", help="sampler preset name (d3lm plugins)")
    p.add_argument("--n", type=_positive, help="number of sequences")
    p.add_argument("--bp", type=_positive, help="length of each sequence")
    p.add_argument(
        "--workers",
        help="processes that split the sequences (CPU): an integer, or auto = one per core",
    )
    p.add_argument("--out", type=Path)
    p.add_argument("--trace", type=Path, help="save the unmasking order (torch file)")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="sampler parameters (steps=25) or dotted config keys (sample.seed=1)",
    )
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("evaluate", help="score a samples FASTA against real data and baselines")
    p.add_argument("--samples", type=Path, required=True)
    p.add_argument("--reference", required=True, help="dataset recipe name or sequence file")
    p.add_argument("--out", type=Path, help="folder for metrics.json/csv (default: beside FILE)")
    p.add_argument("--cache-dir", default=CACHE_DIR)
    p.add_argument("--features", nargs="+", default=["kmer", "oracle"])
    p.add_argument("--feature-param", action="append", default=[], metavar="NAME.KEY=VALUE")
    p.add_argument("--baselines", nargs="*", default=["uniform", "shuffle", "markov"])
    p.add_argument("--baseline-param", action="append", default=[], metavar="NAME.KEY=VALUE")
    p.add_argument("--split", default="test")
    p.add_argument(
        "--train-split", help="novelty and the Markov baseline (default: train, if there is one)"
    )
    p.add_argument("--no-motifs", action="store_true")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.add_argument(
        "--allow-lengths",
        action="store_true",
        help="score samples whose lengths differ from each other or from the reference",
    )
    p.add_argument("--seed", type=_seed, default=0)
    p.set_defaults(func=cmd_evaluate)

    oracle = sub.add_parser("oracle", help="the oracle CNN feature space")
    p = oracle.add_subparsers(dest="action", required=True).add_parser(
        "train",
        help="train (or reuse) the oracle CNN on a labelled dataset; prints its metadata with "
        "the weights' sha256 (checksum), test accuracy and whether it is the shipped oracle",
    )
    p.add_argument("--dataset", default="dhs")
    p.add_argument("--cache-dir", default=CACHE_DIR)
    for f in dataclasses.fields(OracleConfig):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    p.set_defaults(func=cmd_oracle_train)

    p = sub.add_parser("ablation", help="run an ablation grid: train, sample, evaluate, tidy rows")
    p.add_argument("grid", help="grid name (experiments/ablations/<grid>.yaml) or a YAML file")
    _grid_options(p, "training points")
    p.add_argument("--sei-weights", help="a Sei checkpoint: adds SFID (fd_sei) to every point")
    p.add_argument(
        "--rescore",
        action="store_true",
        help="score every sampled point again (after a metric or oracle change); train and "
        "sample nothing",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="for every point")
    p.set_defaults(func=cmd_ablation)

    p = sub.add_parser(
        "sweep",
        help="Optuna sweep worker (SPACE.yaml), or `report`; see README 'Sweeps on a cluster'",
    )
    p.add_argument("space", help="search-space YAML (sweeps/<name>.yaml), or `report`")
    p.add_argument("--study", required=True, help="study name; trials go to runs/<study>/")
    p.add_argument(
        "--storage", required=True, help="sqlite:///FILE, journal:///FILE or postgresql://..."
    )
    p.add_argument("--n-trials", type=_positive, help="stop when the study has N finished trials")
    p.add_argument(
        "--worker",
        type=int,
        default=int(os.environ.get("SLURM_ARRAY_TASK_ID", 0)),
        help="worker index, added to the sampler seed (default: $SLURM_ARRAY_TASK_ID or 0)",
    )
    p.add_argument("--heartbeat", type=_positive, default=60, help="seconds between heartbeats")
    p.add_argument(
        "--grace", type=_positive, help="seconds without heartbeat before a trial is failed"
    )
    p.add_argument("--max-retry", type=_count, default=3, help="retries of a killed trial")
    p.add_argument(
        "--from-run", type=Path, help="sample this trained run in every trial (no training)"
    )
    p.add_argument("--out", type=Path, help="report folder (default reports/sweeps/<study>)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="for every trial")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "import-nt", help="a local HuggingFace NT v2 folder -> a run folder (d3lm sample reads it)"
    )
    p.add_argument("directory", type=Path, help="config.json, model.safetensors or .bin, vocab.txt")
    p.add_argument("--out", type=Path, required=True, help="the run folder to create")
    p.set_defaults(func=cmd_import_nt)

    p = sub.add_parser("export-nt", help="a run or checkpoint -> a HuggingFace NT v2 folder")
    p.add_argument("checkpoint", type=Path, help="run folder (its last.ckpt) or checkpoint file")
    p.add_argument("--out", type=Path, required=True, help="folder for the NT v2 files")
    p.add_argument("--format", choices=["safetensors", "bin"], default="safetensors")
    p.set_defaults(func=cmd_export_nt)

    p = sub.add_parser(
        "precision", help="what trainer.precision=auto chooses here: the bf16 vs fp32 matmul probe"
    )
    p.add_argument("--cache-dir", default=CACHE_DIR)
    p.add_argument("--no-cache", action="store_true", help="measure again; read and write no cache")
    p.set_defaults(func=cmd_precision)

    p = sub.add_parser(
        "finetune", help="fine-tune a checkpoint (or random init) on a labelled task"
    )
    p.add_argument(
        "--config", action="append", default=[], metavar="FILE", help="YAML layers on finetune.yaml"
    )
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="experiments/finetune.yaml keys"
    )
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser(
        "understanding",
        help="pretrain per objective, fine-tune every init on every task and seed: MCC rows",
    )
    p.add_argument("grid", nargs="?", help="grid file (default experiments/understanding.yaml)")
    _grid_options(p, "fine-tuning points (and the pretraining they need)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="for every pretraining run")
    p.set_defaults(func=cmd_understanding)

    p = sub.add_parser("predict", help="class probabilities of sequences under a fine-tuned run")
    p.add_argument("run", type=Path, help="fine-tuning run folder (its best checkpoint)")
    p.add_argument("--data", type=Path, required=True, help="sequence file; labels optional")
    p.add_argument("--out", type=Path, required=True, help="CSV: name, p_<class>..., predicted")
    p.add_argument("--batch-size", type=_positive, default=256)
    p.add_argument("--cache-dir", default=CACHE_DIR)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("demo", help="train, sample and evaluate one run; print the metric table")
    _with_config_args(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # key=value overrides may follow options (argparse alone would stop at the first option)
    args, rest = parser.parse_known_args(argv)
    stray = [r for r in rest if r.startswith("-") or "=" not in r]
    if stray or (rest and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or rest)}")
    if rest:
        args.overrides = [*args.overrides, *rest]
    try:
        with signals():  # SIGTERM and SIGINT raise Interrupted
            load_plugins()  # entry-point plugins for every command, not just `d3lm plugins`
            args.func(args)
    except D3lmError as err:
        if args.debug:
            raise
        print(f"d3lm: error: {err}", file=sys.stderr)
        return 2
    except Interrupted as err:
        again = ["d3lm", *(sys.argv[1:] if argv is None else argv), *err.extra]
        print(f"d3lm: {err}; to continue: {shlex.join(again)}", file=sys.stderr)
        return err.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
