"""Ablation grids: one YAML file per paper table -> trained runs, sampled points, tidy rows.

A grid (``experiments/ablations/<name>.yaml``) has *training* axes and *sampling* axes. A training
point (one setting of every training axis, and a seed) is one ordinary run folder
``runs/<experiment>-<scale>/<point>-s<seed>/``; each sampling point is sampled from that trained
model into ``<run>/samples/<sample point>/`` (``sample.yaml``, ``samples.fasta``,
``metrics.json``), so a sampling axis never retrains. Finished work is never redone: a run whose
``checkpoints/last.ckpt`` reached ``trainer.max_steps`` is trained, a shorter one resumes from it,
and a sample point is done when its ``metrics.json`` holds every requested Fréchet distance (files
are written atomically, so a half-written sample or evaluation does not exist yet and is redone).

Grid file::

    experiment: ablation-steps      # results/<experiment>-<scale>.csv
    models: base                    # runs/<models>-<scale>/ (default: the experiment): grids
                                    # with the same models name share their trained runs
    seeds: 3                        # a count (0..n-1) or a list; --seeds overrides
    config: {evaluate.motifs: false}           # dotted overrides for every point
    by_scale: {tiny: {sample.n: 256}}          # more overrides for one --scale
    train:                          # axis name -> values (a CSV column each)
      schedule: {key: diffusion.schedule.name, values: [linear, cosine]}
    sample:
      steps: {key: sample.sampler.params.steps, values: [5, 10, per_token]}

A value is a scalar for the axis ``key``, ``"*"`` (every registered plugin of the kind ``key``
names, so a user's plugin joins the grid unchanged), or ``{label: NAME, set: {dotted.key: value}}``
for settings that couple several keys (``kmer`` with ``k = 3``). The short form ``dotted.key:
[values]`` uses the key as axis name. Sampler parameters may be a symbol of :data:`SYMBOLS`
(``per_token``), resolved from the run's tokenizer when it samples.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from d3lm.config import EXPERIMENTS_DIR, dotlist, flatten, load_config, scale_path
from d3lm.errors import D3lmError, NotFound
from d3lm.experiments.grid import (
    Axis,
    Point,
    Shard,
    folder_name,
    parse_axis,
    parse_seeds,
    product,
)
from d3lm.experiments.reuse import check_same_sampling, check_same_training
from d3lm.io import write_text
from d3lm.plugins import load_plugins
from d3lm.preflight import check_layers, check_run_config, named
from d3lm.registry import PLUGIN_KEYS
from d3lm.rundir import RunDir
from d3lm.specfiles import expect_mapping, read_mapping
from d3lm.stages import sample as sample_stage
from d3lm.stages.checkpoints import load_model
from d3lm.stages.results import git_revision, replace_rows
from d3lm.stages.sample import SYMBOLS, resolve_symbols
from d3lm.stages.score import (
    GENERATED,
    Scorer,
    evaluated,
    sampling_metrics,
    training_metrics,
)
from d3lm.stages.train import train_point, train_status

GRIDS_DIR = EXPERIMENTS_DIR / "ablations"


@dataclass
class Grid:
    name: str
    source: str
    experiment: str
    models: str | None
    train: list[Axis]
    sample: list[Axis]
    seeds: list[int]
    config: dict[str, Any] = field(default_factory=dict)
    by_scale: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: axis -> label of the point every other point is compared with (the paper's setting)
    reference: dict[str, str] = field(default_factory=dict)

    def train_points(self) -> list[tuple[Point, int]]:
        return [(p, s) for p in product(self.train) for s in self.seeds]

    def sample_points(self) -> list[Point]:
        return product(self.sample)


def grid_path(name: str | Path) -> Path:
    """A grid name (``experiments/ablations/<name>.yaml``) or a YAML file path."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise NotFound(f"{path}: no such grid file")
        return path
    path = GRIDS_DIR / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in GRIDS_DIR.glob("*.yaml")))
        raise NotFound(f"unknown ablation grid {name!r}; known grids: {known}")
    return path


#: ``title`` and ``paper`` name the grid's section of reports/<scale>/README.md (analysis only).
GRID_KEYS = (
    "experiment",
    "title",
    "paper",
    "models",
    "seeds",
    "config",
    "by_scale",
    "train",
    "sample",
    "reference",
)


def load_grid(name: str | Path, seeds: int | Sequence[int] | None = None) -> Grid:
    """Parse and expand a grid file; wildcards expand against the registries now. The file's
    shape is checked like the main config's: each problem names the grid file and the entry."""
    load_plugins()
    path = grid_path(name)
    where = f"grid file {path}"
    raw = read_mapping(path, "grid file", GRID_KEYS)
    names = {key: folder_name(where, key, raw.get(key)) for key in ("experiment", "models")}
    axes = {
        kind: expect_mapping(raw.get(kind) or {}, f"{where}: {kind}", "a mapping of axis -> values")
        for kind in ("train", "sample")
    }
    by_scale = expect_mapping(raw.get("by_scale") or {}, f"{where}: by_scale", "scale -> overrides")
    for scale, layer in by_scale.items():
        try:
            scale_path(str(scale))
        except NotFound as err:
            raise D3lmError(f"{where}: by_scale.{scale}: {err}") from None
        expect_mapping(layer or {}, f"{where}: by_scale.{scale}", "a mapping of config keys")
    config = expect_mapping(raw.get("config") or {}, f"{where}: config", "a mapping of config keys")
    seeds_at = "--seeds" if seeds is not None else f"{where}: seeds"
    grid = Grid(
        name=path.stem,
        source=str(path),
        experiment=names["experiment"] or f"ablation-{path.stem}",
        models=names["models"],
        train=[parse_axis(where, "train", str(n), spec) for n, spec in axes["train"].items()],
        sample=[parse_axis(where, "sample", str(n), spec) for n, spec in axes["sample"].items()],
        seeds=parse_seeds(seeds_at, raw.get("seeds", 3) if seeds is None else seeds),
        config=flatten(config),
        by_scale={str(k): flatten(v or {}) for k, v in by_scale.items()},
        reference=_reference(where, raw.get("reference"), axes),
    )
    for axis in [*grid.train, *grid.sample]:
        labels = [setting.label for setting in axis.settings]
        if axis.name in grid.reference and grid.reference[axis.name] not in labels:
            raise D3lmError(
                f"{where}: reference {axis.name}={grid.reference[axis.name]!r} is not one of "
                f"its values {labels}"
            )
    return grid


def _reference(where: str, spec: Any, axes: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """``reference: {axis: label}``: the labels are checked once the axes are expanded."""
    if spec is None:
        return {}
    spec = expect_mapping(spec, f"{where}: reference", "a mapping of axis -> label")
    names = {str(n) for kind in axes.values() for n in kind}
    unknown = sorted(str(a) for a in spec if str(a) not in names)
    if unknown:
        raise D3lmError(f"{where}: reference names no axis {unknown} (axes: {sorted(names)})")
    return {str(a): str(v) for a, v in spec.items()}


def check_plugins(grid: Grid) -> None:
    """Every plugin a grid names must be registered (fails before any training starts)."""
    for kind, axes in (("train", grid.train), ("sample", grid.sample)):
        for axis in axes:
            for setting in axis.settings:
                for key, value in setting.overrides.items():
                    registry = PLUGIN_KEYS.get(key)
                    if registry is not None and value not in registry:
                        raise D3lmError(
                            f"grid file {grid.source}: {kind} axis {axis.name!r} value "
                            f"{setting.label!r} sets {key}={value!r}, not a registered "
                            f"{registry.kind} (known: {', '.join(registry.names())})"
                        )


def check_grid(plan: Plan) -> None:
    """Everything the grid's points would refuse, before any point trains (and at --dry-run).

    Each entry of the file and the command line alone first (keys, types, value ranges), so an
    error names the entry that holds it; then every sampling point of every training point
    composed as it will run, its value ranges checked and its plugins built, its sampler
    included (symbols such as ``per_token`` as a step count of 1), at the grid's first seed
    (the seeds themselves are checked by load_grid)."""
    grid = plan.grid
    check_plugins(grid)
    where = f"grid file {grid.source}"
    layers = [named(f"{where}: config", grid.config)]
    if plan.scale in grid.by_scale:
        layers.append(named(f"{where}: by_scale.{plan.scale}", grid.by_scale[plan.scale]))
    layers.append(("command-line overrides", plan.overrides))
    for kind, axes in (("train", grid.train), ("sample", grid.sample)):
        layers += [
            named(f"{where}: {kind} axis {axis.name!r} value {s.label!r}", s.overrides)
            for axis in axes
            for s in axis.settings
        ]

    def compose(overrides: list[str], source: str) -> DictConfig:
        return load_config(plan.scale, overrides=overrides, overrides_source=source)

    check_layers(compose, layers)
    for train in product(grid.train):
        for sp in grid.sample_points():
            try:
                check_run_config(plan.config(train, grid.seeds[0], sp), SYMBOLS)
            except (D3lmError, TypeError) as err:
                raise D3lmError(
                    f"{where}: training point {train.name}, sampling point {sp.name}: {err}"
                ) from None


@dataclass
class Plan:
    """A grid resolved against a scale and the user's overrides."""

    grid: Grid
    scale: str | None
    overrides: list[str] = field(default_factory=list)
    sei_weights: str | None = None

    def name(self, base: str) -> str:
        """Runs and results of different scales never mix: ``<base>-<scale>``."""
        return f"{base}-{self.scale}" if self.scale else base

    @property
    def results(self) -> str:
        return self.name(self.grid.experiment)

    def config(self, train: Point, seed: int, sample: Point | None = None) -> DictConfig:
        layers = {
            **self.grid.config,
            **self.grid.by_scale.get(self.scale or "", {}),
        }
        axes = {**train.overrides, **(sample.overrides if sample else {})}
        identity = {
            "experiment": self.name(self.grid.models or self.grid.experiment),
            "run": f"{train.name}-s{seed}",
            "seed": seed,
            "sample.seed": seed,
        }
        cfg = load_config(
            self.scale,
            overrides=[*dotlist(layers), *self.overrides, *dotlist({**axes, **identity})],
        )
        if self.sei_weights:
            if "sei" not in cfg.evaluate.features:
                cfg.evaluate.features.append("sei")
            cfg.evaluate.params.sei = {"weights": self.sei_weights}
        return cfg


def point_rows(
    plan: Plan,
    cfg: DictConfig,
    labels: Mapping[str, str],
    point: str,
    sets: Mapping[str, Mapping[str, float]],
    tokens: int | None,
    instrument: Mapping[str, Any],
) -> pd.DataFrame:
    """Tidy rows of one point: every axis as a column, the seed, n, bp, the token count and
    the instrument (``oracle`` checksum and its test accuracy: tables refuse to mix them)."""
    common = {
        "experiment": plan.results,
        "point": point,
        **{a.name: labels.get(a.name) for a in [*plan.grid.train, *plan.grid.sample]},
        "seed": cfg.seed,
        "n": cfg.sample.n,
        "bp": cfg.sample.bp,
        "tokens": tokens,
        **instrument,
    }
    git = git_revision()
    return pd.DataFrame(
        [
            {**common, "set": name, "metric": m, "value": v, "git": git}
            for name, metrics in sets.items()
            for m, v in metrics.items()
        ]
    )


def run_grid(
    plan: Plan,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
    shard: Shard | None = None,
    rescore: bool = False,
) -> Path:
    """Train what is missing, sample and score every sampling point, write the result rows;
    return ``results/<experiment>.csv``. With ``dry_run`` only print what is done/missing;
    with ``shard`` only that shard's training points; with ``rescore`` score again every point
    that has samples (after a metric or oracle change), training and sampling nothing."""
    grid, shard = plan.grid, shard or Shard()
    check_grid(plan)
    git_revision()  # read now: rows name the code this process started with
    scorer = Scorer()
    samples = grid.sample_points()
    todo = grid.train_points()
    results: Path | None = None
    for i, (train, seed) in shard.select(todo):
        i += 1
        cfg = plan.config(train, seed)
        run = RunDir.of(cfg)
        results = Path(cfg.results_dir) / f"{plan.results}.csv"
        check_same_training(cfg, run.path)
        status = train_status(cfg, run)
        echo(f"[{i}/{len(todo)}] {run}: training {status}")
        if rescore and status != "done":
            continue  # nothing of an unfinished model is scored
        if not dry_run and status != "done":
            train_point(cfg, run)
        tokenizer = None if dry_run else load_model(run.path).tokenizer
        for sp in samples:
            scfg = plan.config(train, seed, sp)
            out = run.sample_point(sp.name)
            check_same_sampling(scfg, out)
            done = evaluated(out.metrics, scfg.evaluate.features)
            has_fasta = out.fasta.exists()
            state = "done" if done else "sampled" if has_fasta else "missing"
            echo(f"    {sp.name}: {state}")
            if dry_run or (rescore and not has_fasta):
                continue
            if not out.settings.exists():
                write_text(out.settings, OmegaConf.to_yaml(scfg.sample))
            tokens = resolve_symbols(scfg, tokenizer)
            if done is None or rescore:
                if not has_fasta:
                    sample_stage.sample(scfg, run.path, out=out.fasta)
                done = scorer(scfg, out.fasta, out.metrics)
            generated = {
                GENERATED: {
                    **done.sets[GENERATED],
                    **training_metrics(run.path),
                    **sampling_metrics(out.fasta),
                }
            }
            labels = {**train.labels, **sp.labels}
            point = f"{run.name}/{sp.name}"
            rows = point_rows(plan, scfg, labels, point, generated, tokens, done.instrument)
            references = {k: v for k, v in done.sets.items() if k != GENERATED}
            ref_point = f"reference-n{scfg.sample.n}-bp{scfg.sample.bp}-s{seed}"
            ref_rows = point_rows(plan, scfg, {}, ref_point, references, None, done.instrument)
            rows = pd.concat([rows, ref_rows], ignore_index=True)
            replace_rows(results, rows)
    if results is None:
        where = f" for shard {shard.index}/{shard.count}" if shard.count > 1 else ""
        raise D3lmError(f"{grid.source}: the grid has no points{where}")
    if not dry_run:
        echo(f"results: {results}")
    return results
