"""Commands on one run: train, sample, evaluate, demo; and the machine, data and plugins."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig

from d3lm.commands.table import (
    CACHE,
    CONFIGURED,
    POSITIVE,
    SEED_ARG,
    Command,
    arg,
)
from d3lm.config import dotlist, load_config, load_run_config
from d3lm.errors import D3lmError
from d3lm.interrupt import Interrupted, at
from d3lm.io import check_folder, check_not_inputs
from d3lm.oracle.train import OracleConfig
from d3lm.plugins import check_config
from d3lm.rundir import RunDir, provenance_of


def _config(args: argparse.Namespace) -> DictConfig:
    cfg = load_config(args.scale, args.config, args.overrides)
    check_config(cfg)
    return cfg


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


def plugins(args: argparse.Namespace) -> str:
    from d3lm.plugins import catalogue

    listed = catalogue()
    if args.json:
        return json.dumps(listed, indent=2)
    return "\n".join(
        f"{kind}:\n" + "\n".join(f"  {name:<20} {doc}" for name, doc in entries.items())
        for kind, entries in listed.items()
    )


def data_prepare(args: argparse.Namespace) -> Path:
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
        return TASKS.build(args.name, params).prepare(Path(args.cache_dir))
    return prepare(args.name, Path(args.cache_dir), params or None)


def train(args: argparse.Namespace) -> Path:
    from d3lm.stages.train import train

    resume = [o.split("=", 1)[1] for o in args.overrides if o.startswith("resume=")]
    if resume:
        rest = [o for o in args.overrides if not o.startswith("resume=")]
        cfg = load_run_config(Path(resume[-1]), rest)
        cfg.resume = resume[-1]
        check_config(cfg)
    else:
        cfg = _config(args)
    try:
        return train(cfg)
    except Interrupted as err:
        if err.run_dir is not None and not cfg.run and not cfg.resume:
            err.extra.append(f"run={err.run_dir.name}")  # the same command, in the same folder
        raise


#: Keys of the sample stage (not of the sampler) a command line may give bare: guidance=2.
SAMPLE_KEYS = frozenset({"guidance"})


def sample(args: argparse.Namespace) -> Path:
    from d3lm.stages.sample import sample

    # a key under a top-level config section (sample.seed=1) is a config key, one of
    # SAMPLE_KEYS is the sample stage's; anything else (steps=25, order_params.noise=1) is a
    # sampler parameter
    sections = set(load_config())
    dotted = [o for o in args.overrides if o.split("=", 1)[0].split(".", 1)[0] in sections]
    stage = [o for o in args.overrides if o.split("=", 1)[0] in SAMPLE_KEYS]
    params = [f"sample.sampler.params.{o}" for o in args.overrides if o not in dotted + stage]
    given = (("n", args.n), ("bp", args.bp), ("workers", args.workers))
    extra = [f"sample.{k}={v}" for k, v in given if v is not None]
    extra += [f"sample.{o}" for o in stage]
    if args.label:  # as JSON strings: a class name is never read as a number or a list
        extra += dotlist({"sample.labels": args.label})
    if args.sampler:
        extra.append(f"sample.sampler.name={args.sampler}")
    run = RunDir(args.run)
    cfg = load_run_config(run.path, [*dotted, *extra, *params])
    check_config(cfg)
    out = args.out or run.samples
    inputs = {"the checkpoint": run.last, "the config": run.config}
    outputs = {"--out": out, "--trace": args.trace, "its provenance": provenance_of(out)}
    check_not_inputs(outputs, inputs)
    with at(f"sampling from {run} stopped, {out} not written"):
        return sample(cfg, run.path, out=out, trace=args.trace)


def evaluate(args: argparse.Namespace) -> str:
    from d3lm.evaluate import EvaluateOptions, evaluate_fasta, metric_table

    base = load_config().evaluate  # what a run scores with, unless the options say otherwise
    features = args.features or list(base.features)
    baselines = list(base.baselines) if args.baselines is None else args.baselines
    options = dataclasses.replace(
        EvaluateOptions.from_config(base, args.seed),
        features=_plugin_params(features, args.feature_param),
        baselines=_plugin_params(baselines, args.baseline_param),
        split=args.split or base.split,
        train_split=args.train_split,
        motifs=not args.no_motifs,
        progress=not args.no_progress,
        allow_lengths=args.allow_lengths,
    )
    out = args.out or args.samples.parent
    outputs = {"--out": out, "the output": RunDir(out).metrics, "the rows": out / "metrics.csv"}
    check_not_inputs(outputs, {"--samples": args.samples, "--reference": args.reference})
    with at(f"evaluating {args.samples} stopped, nothing written to {out}"):
        rows = evaluate_fasta(args.samples, args.reference, out, Path(args.cache_dir), options)
    return metric_table(rows).to_string(float_format=lambda v: f"{v:.4g}")


def oracle_train(args: argparse.Namespace) -> str:
    from d3lm.oracle.datasets import oracle_train

    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(OracleConfig)}
    made = oracle_train(args.dataset, Path(args.cache_dir), OracleConfig(**fields))
    return json.dumps(made, indent=2)


def precision(args: argparse.Namespace) -> str:
    import torch

    from d3lm.precision import cpu_probe, resolve

    if not args.no_cache:
        check_folder(args.cache_dir)
    probe = cpu_probe(None if args.no_cache else Path(args.cache_dir))
    lines = [
        f"{probe.size}x{probe.size} matmul, {torch.get_num_threads()} threads: "
        f"fp32 {probe.fp32_s * 1e3:.2f} ms, bf16 {probe.bf16_s * 1e3:.2f} ms "
        f"(torch {probe.torch})",
        f"cpu: {probe.choice().line()}",
    ]
    if torch.cuda.is_available():
        lines.append(f"cuda: {resolve('auto', 'cuda', None).line()}")
    return "\n".join(lines)


def demo(args: argparse.Namespace) -> str:
    from d3lm.stages.demo import demo

    return demo(_config(args))


COMMANDS: tuple[Command, ...] = (
    Command(
        "plugins", "list registered plugins by kind", plugins, (arg("--json", action="store_true"),)
    ),
    Command(
        "data prepare",
        "download and convert a named dataset or labelled task to parquet",
        data_prepare,
        (
            arg("name", help="a dataset recipe or a task (d3lm plugins)"),
            arg("params", nargs="*", metavar="key=value", help="e.g. length=200"),
            CACHE,
        ),
        group_help="datasets",
    ),
    Command("train", "train a model; resume=RUN_DIR continues a run", train, CONFIGURED),
    Command(
        "sample",
        "generate sequences from a trained run into FASTA",
        sample,
        (
            arg("run", help="run folder (runs/<experiment>/<run>)"),
            arg("--sampler", help="sampler preset name (d3lm plugins)"),
            arg("--n", type=POSITIVE, help="number of sequences"),
            arg("--bp", type=POSITIVE, help="length of each sequence"),
            arg(
                "--label",
                action="append",
                help="a conditional run's class to sample (repeat: equal shares), or all: an "
                "equal share per class; with guidance=W (classifier-free, W >= 0)",
            ),
            arg(
                "--workers",
                help="processes that split the sequences (CPU): an integer, or auto = one per core",
            ),
            arg("--out", type=Path),
            arg("--trace", type=Path, help="save the unmasking order (torch file)"),
            arg(
                "overrides",
                nargs="*",
                metavar="key=value",
                help="sampler parameters (steps=25, steps=per_token), guidance=W or dotted "
                "config keys (sample.seed=1)",
            ),
        ),
    ),
    Command(
        "evaluate",
        "score a samples FASTA against real data and baselines",
        evaluate,
        (
            arg("--samples", type=Path, required=True),
            arg("--reference", required=True, help="dataset recipe name or sequence file"),
            arg("--out", type=Path, help="folder for metrics.json/csv (default: beside FILE)"),
            CACHE,
            arg("--features", nargs="+", help="feature spaces (default: base.yaml's)"),
            arg("--feature-param", action="append", default=[], metavar="NAME.KEY=VALUE"),
            arg("--baselines", nargs="*", help="generator rows (default: base.yaml's)"),
            arg("--baseline-param", action="append", default=[], metavar="NAME.KEY=VALUE"),
            arg("--split", help="the reference's split (default: base.yaml's)"),
            arg(
                "--train-split",
                help="novelty and the Markov baseline (default: train, if there is one)",
            ),
            arg("--no-motifs", action="store_true"),
            arg("--no-progress", action="store_true", help="no progress bars on stderr"),
            arg(
                "--allow-lengths",
                action="store_true",
                help="score samples whose lengths differ from each other or from the reference",
            ),
            arg("--seed", type=SEED_ARG, default=0),
        ),
    ),
    Command(
        "oracle train",
        "train (or reuse) the oracle CNN on a labelled dataset; prints its metadata with the "
        "weights' sha256 (checksum), test accuracy and whether it is the shipped oracle",
        oracle_train,
        (
            arg("--dataset", default="dhs"),
            CACHE,
            *(
                arg(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
                for f in dataclasses.fields(OracleConfig)
            ),
        ),
        group_help="the oracle CNN feature space",
    ),
    Command(
        "precision",
        "what trainer.precision=auto (and sample.autocast=auto) chooses here: the bf16 vs "
        "fp32 matmul probe",
        precision,
        (
            CACHE,
            arg("--no-cache", action="store_true", help="measure again; read and write no cache"),
        ),
    ),
    Command("demo", "train, sample and evaluate one run; print the metric table", demo, CONFIGURED),
)
