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

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from d3lm import runlock, runner
from d3lm.config import EXPERIMENTS_DIR, dotlist, flatten, load_config, scale_path
from d3lm.errors import D3lmError, NotFound
from d3lm.evaluate import (
    EvaluateOptions,
    build_extractors,
    evaluate_samples,
    provenance,
    write_metrics,
)
from d3lm.io import atomic_path, write_text
from d3lm.metrics.motifs import MotifScanner
from d3lm.plugins import load_plugins
from d3lm.preflight import check_layers, check_run_config, named
from d3lm.registry import PLUGIN_KEYS, WILDCARD
from d3lm.specfiles import describe, expect_mapping, read_mapping

GRIDS_DIR = EXPERIMENTS_DIR / "ablations"
GENERATED = runner.GENERATED


def free_tokens(layout: torch.Tensor) -> int:
    """Positions a sampler draws (more than one legal token): one step per token."""
    return int((layout.sum(-1) > 1).sum())


#: Symbolic sampler-parameter values, resolved from the tokenizer layout of the bp sampled.
SYMBOLS: dict[str, Callable[[torch.Tensor], Any]] = {"per_token": free_tokens}


# ------------------------------------------------------------------------------------ the grid


@dataclass(frozen=True)
class Setting:
    """One value of an axis: its label (a table cell, a folder name part) and the keys it sets."""

    label: str
    overrides: Mapping[str, Any]


@dataclass(frozen=True)
class Axis:
    name: str
    settings: tuple[Setting, ...]


@dataclass(frozen=True)
class Point:
    """One setting of every axis of a kind (training or sampling)."""

    labels: Mapping[str, str]
    overrides: Mapping[str, Any]

    @property
    def name(self) -> str:
        return "_".join(f"{a}-{v}" for a, v in self.labels.items()) or "default"


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
        return [(p, s) for p in _product(self.train) for s in self.seeds]

    def sample_points(self) -> list[Point]:
        return _product(self.sample)


def _product(axes: Sequence[Axis]) -> list[Point]:
    points = []
    for combo in itertools.product(*(a.settings for a in axes)):
        overrides: dict[str, Any] = {}
        for setting in combo:
            overrides.update(setting.overrides)
        labels = {a.name: s.label for a, s in zip(axes, combo, strict=True)}
        points.append(Point(labels, overrides))
    return points


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


GRID_KEYS = ("experiment", "models", "seeds", "config", "by_scale", "train", "sample", "reference")
AXIS_KEYS = ("key", "values")
#: Seeds a run accepts (runner.RANGES["seed"]).
SEED_LIMIT = 2**32


def load_grid(name: str | Path, seeds: int | Sequence[int] | None = None) -> Grid:
    """Parse and expand a grid file; wildcards expand against the registries now. The file's
    shape is checked like the main config's: each problem names the grid file and the entry."""
    load_plugins()
    path = grid_path(name)
    where = f"grid file {path}"
    raw = read_mapping(path, "grid file", GRID_KEYS)
    names = {key: _folder_name(where, key, raw.get(key)) for key in ("experiment", "models")}
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
        train=[_axis(where, "train", str(n), spec) for n, spec in axes["train"].items()],
        sample=[_axis(where, "sample", str(n), spec) for n, spec in axes["sample"].items()],
        seeds=_seeds(seeds_at, raw.get("seeds", 3) if seeds is None else seeds),
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


def _folder_name(where: str, key: str, value: Any) -> str | None:
    """``experiment`` and ``models`` name folders and results files."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or any(c in value for c in "/\\ \t"):
        raise D3lmError(f"{where}: {key}: expected a folder-name safe name, got {describe(value)}")
    return value


def _seeds(where: str, seeds: Any) -> list[int]:
    """A count (seeds 0..n-1) or a list of distinct seeds in [0, 2**32)."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise D3lmError(f"{where}: a count must be >= 1, got {seeds}")
        return list(range(seeds))
    if not isinstance(seeds, Sequence) or isinstance(seeds, str) or not seeds:
        raise D3lmError(f"{where}: expected a count or a list of seeds, got {describe(seeds)}")
    bad = [
        s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < SEED_LIMIT
    ]
    if bad:
        raise D3lmError(f"{where}: expected integers in [0, 2**32), got {bad}")
    if len(set(seeds)) != len(seeds):
        raise D3lmError(f"{where}: repeated seeds {list(seeds)}")
    return list(seeds)


def _axis(file: str, kind: str, name: str, spec: Any) -> Axis:
    where = f"{file}: {kind} axis {name!r}"
    if isinstance(spec, Mapping):
        unknown = sorted(str(k) for k in spec if k not in AXIS_KEYS)
        if unknown:
            raise D3lmError(f"{where}: unknown fields {unknown} (known: {list(AXIS_KEYS)})")
        key, values = spec.get("key"), spec.get("values")
        if key is not None and not isinstance(key, str):
            raise D3lmError(f"{where}: key: expected a dotted config key, got {describe(key)}")
    else:
        key, values = name, spec
    values = [values] if isinstance(values, str) else values
    if not isinstance(values, list) or not values:
        raise D3lmError(f"{where} needs a non-empty list of values, got {describe(values)}")
    settings: list[Setting] = []
    for value in values:
        if value == WILDCARD:
            if key not in PLUGIN_KEYS:
                raise D3lmError(
                    f"{where}: '*' needs a plugin key ({', '.join(PLUGIN_KEYS)}), got {key!r}"
                )
            listed = {s.label for s in settings} | {v for v in values if isinstance(v, str)}
            settings += [Setting(n, {key: n}) for n in PLUGIN_KEYS[key].names() if n not in listed]
        elif isinstance(value, Mapping):
            label, changes = value.get("label"), value.get("set")
            if set(value) != {"label", "set"} or not isinstance(changes, Mapping):
                raise D3lmError(f"{where}: {dict(value)} needs `label` and `set` (a mapping)")
            if isinstance(label, Mapping | list) or label is None:
                raise D3lmError(f"{where}: label: expected a name, got {describe(label)}")
            settings.append(Setting(str(label), flatten(changes)))
        elif key is None:
            raise D3lmError(f"{where} has scalar values but no `key`")
        else:
            settings.append(Setting(str(value), {key: value}))
    labels = [s.label for s in settings]
    bad = [label for label in labels if not label or any(c in label for c in "/\\ \t")]
    if bad:
        raise D3lmError(f"{where}: labels must be folder-name safe, got {bad}")
    if len(set(labels)) != len(labels):
        raise D3lmError(f"{where} repeats a label: {labels}")
    return Axis(name, tuple(settings))


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
    for train in _product(grid.train):
        for sp in grid.sample_points():
            try:
                check_run_config(plan.config(train, grid.seeds[0], sp), SYMBOLS)
            except (D3lmError, TypeError) as err:
                raise D3lmError(
                    f"{where}: training point {train.name}, sampling point {sp.name}: {err}"
                ) from None


# --------------------------------------------------------------------------------- configs


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


# ----------------------------------------------------------------------------------- status


def trained_steps(run_dir: Path) -> int | None:
    """The global step of ``checkpoints/last.ckpt``, or None without one."""
    path = Path(run_dir) / "checkpoints" / "last.ckpt"
    if not path.exists():
        return None
    ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    return int(ckpt["global_step"])


#: The key of a sample point's metrics.json that records the instrument (not a scored set).
INSTRUMENT = "instrument"


@dataclass(frozen=True)
class Scored:
    """A sample point's metrics: {set: {metric: value}} and the instrument that scored them
    (the feature extractors' provenance, e.g. the oracle's checksum and test accuracy)."""

    sets: dict[str, dict[str, float]]
    instrument: dict[str, Any]


def evaluated(metrics: Path, features: Iterable[str]) -> Scored | None:
    """A sample point's metrics when complete (``fd_`` and ``kid_`` of every requested feature
    space, and the instrument recorded), else None: points scored before KID existed, or
    without a recorded instrument, are scored again from their samples."""
    if not metrics.exists():
        return None
    nested = json.loads(metrics.read_text())
    instrument = nested.pop(INSTRUMENT, None)
    generated = nested.get(GENERATED, {})
    wanted = [f"{d}_{f}" for f in features for d in ("fd", "kid")]
    if instrument is None or not all(m in generated for m in wanted):
        return None
    return Scored(nested, instrument)


#: Config keys that must match for a run folder to be reused (max_steps may grow: it resumes).
TRAINING_KEYS = (
    "seed",
    "data.dataset",
    "data.params",
    "data.batch_size",
    "tokenizer",
    "model",
    "diffusion",
    "optim",
)


def check_same_training(cfg: DictConfig, run_dir: Path) -> None:
    """A run folder trained with other settings (another grid, scale or override) is an error,
    never silently reused."""
    saved = Path(run_dir) / "config.yaml"
    if not saved.exists() or trained_steps(run_dir) is None:
        return
    old = OmegaConf.load(saved)
    # runs saved before data.params existed were built with the recipe's defaults
    saved_default = {"data.params": {}}
    differ = [
        k
        for k in TRAINING_KEYS
        if OmegaConf.select(old, k, default=saved_default.get(k)) != OmegaConf.select(cfg, k)
    ]
    if differ:
        raise D3lmError(
            f"{run_dir}: trained with other {', '.join(differ)} than this grid point asks for; "
            "remove the folder or choose another runs_dir"
        )


def check_same_sampling(cfg: DictConfig, out: Path) -> None:
    """A sample point folder is reused only for the same ``sample`` settings (grids that share
    trained runs may name sample points alike); its ``sample.yaml`` records them."""
    saved = out / "sample.yaml"
    if saved.exists() and _drawn(OmegaConf.load(saved)) != _drawn(cfg.sample):
        raise D3lmError(
            f"{out}: sampled with other settings than this grid point asks for ({saved}); "
            "remove the folder or name the axis differently"
        )


#: ``sample`` keys that change how sequences are computed, not the experiment: not compared, so
#: samples drawn on a CPU are reused on a GPU machine (its rounding may change rare tokens). Not
#: ``batch_size``: a remasking sampler stops a batch once none of its rows has a mask left.
NOT_DRAWN = ("workers", "progress", "device")


def _drawn(sample: DictConfig) -> dict[str, Any]:
    """The ``sample`` settings that decide the sequences (the counter-based draws make them
    independent of worker processes)."""
    plain = OmegaConf.to_container(sample, resolve=True)
    assert isinstance(plain, dict)
    return {k: v for k, v in plain.items() if k not in NOT_DRAWN}


def train_status(cfg: DictConfig, run_dir: Path) -> str:
    step = trained_steps(run_dir)
    if step is None:
        return "missing"
    return "done" if step >= cfg.trainer.max_steps else f"partial ({step}/{cfg.trainer.max_steps})"


# ------------------------------------------------------------------------------------- stages


def train_point(cfg: DictConfig, run_dir: Path) -> None:
    """Train a point, resuming from its last checkpoint; a run that never checkpointed restarts
    from scratch (its aborted logs go too, so the log is one clean session). The folder is
    locked before anything is removed, so a second worker given the point is refused instead
    of deleting the logs of the one training it."""
    with runlock.hold(run_dir):
        if trained_steps(run_dir) is not None:
            cfg.resume = str(run_dir)
        else:
            for sub in ("checkpoints", "logs"):
                _remove_tree(run_dir / sub)
        runner.train(cfg)


def _remove_tree(path: Path) -> None:
    if not path.exists():
        return
    for child in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        child.rmdir() if child.is_dir() else child.unlink()
    path.rmdir()


def resolve_symbols(cfg: DictConfig, tokenizer: Any) -> int:
    """Replace symbolic sampler parameters (``per_token``) in place, from the layout of the
    trained run's tokenizer (a learned one such as ``bpe`` exists only there); return the
    number of tokens sampled."""
    layout = tokenizer.layout(cfg.sample.bp)
    params = cfg.sample.sampler.params
    for key, value in list(params.items()):
        if isinstance(value, str) and value in SYMBOLS:
            params[key] = SYMBOLS[value](layout)
    return free_tokens(layout)


class Scorer:
    """Evaluation for a whole grid: data, extractors and baseline rows are built once.

    The real and baseline rows depend on the reference, the sample count and length and the
    seed, not on the model, so they are computed at the first sample point with that key, kept
    in ``runs/<experiment>/baselines/`` and reused by every later point.
    """

    def __init__(self) -> None:
        self._data: dict[str, tuple[list[str], list[str]]] = {}
        self._extractors: dict[str, Any] = {}

    def data(self, cfg: DictConfig) -> tuple[list[str], list[str]]:
        key = json.dumps(
            [
                cfg.data.dataset,
                cfg.evaluate.split,
                cfg.data.valid_fraction,
                cfg.data.test_fraction,
                OmegaConf.to_container(cfg.data.params, resolve=True),
            ]
        )
        if key not in self._data:
            table = runner.data_table(cfg)
            self._data[key] = (
                table.loc[table["split"] == cfg.evaluate.split, "sequence"].tolist(),
                table.loc[table["split"] == "train", "sequence"].tolist(),
            )
        return self._data[key]

    def options(self, cfg: DictConfig) -> EvaluateOptions:
        return EvaluateOptions.from_config(cfg.evaluate, cfg.seed)

    def baseline_file(
        self, cfg: DictConfig, options: EvaluateOptions, instrument: Mapping[str, Any]
    ) -> Path:
        data_params = OmegaConf.to_container(cfg.data.params, resolve=True)
        key = {
            "dataset": str(cfg.data.dataset),
            # only when set, so baselines cached before data.params existed keep their names
            **({"data_params": data_params} if data_params else {}),
            "n": cfg.sample.n,
            "bp": cfg.sample.bp,
            "options": [options.features, options.baselines, options.split, options.motifs],
            "seed": options.seed,
            "distances": [dataclasses.asdict(options.kid), dataclasses.asdict(options.intervals)],
            "instrument": dict(instrument),
        }
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
        name = f"n{cfg.sample.n}-bp{cfg.sample.bp}-s{cfg.seed}-{digest}.json"
        return Path(cfg.runs_dir) / cfg.experiment / "baselines" / name

    def __call__(self, cfg: DictConfig, samples: Path, out: Path) -> Scored:
        """Score ``samples``; write ``out`` (metrics.json: {set: {metric: value}} for every
        set, and the instrument)."""
        options = self.options(cfg)
        spec = json.dumps(options.features, sort_keys=True)
        if spec not in self._extractors:
            self._extractors[spec] = build_extractors(options.features, Path(cfg.cache_dir))
        instrument = provenance(self._extractors[spec])
        cached = self.baseline_file(cfg, options, instrument)
        if cached.exists():
            options.baselines = {}
        reference, train = self.data(cfg)
        rows = evaluate_samples(
            runner.read_samples(samples),
            reference,
            train,
            self._extractors[spec],
            options,
            MotifScanner() if options.motifs else None,
            run=GENERATED,
        )
        if not cached.exists():
            write_metrics(rows[rows["run"] != GENERATED], cached)
        sets = json.loads(cached.read_text())
        for name, metric, value in rows.itertuples(index=False):
            sets.setdefault(name, {})[metric] = float(value)
        nested = {**sets, INSTRUMENT: instrument}
        write_text(out, json.dumps(nested, indent=2, sort_keys=True) + "\n")
        return Scored(sets, instrument)


# -------------------------------------------------------------------------------------- rows


def training_metrics(run_dir: Path) -> dict[str, float]:
    """``val_bpn``: the last validation bound of the run in bits per nucleotide (comparable
    across tokenisers), carried on its generated rows; empty when the run never validated."""
    log = runner.read_log(run_dir)
    if "val/bpn" not in log or log["val/bpn"].isna().all():
        return {}
    return {"val_bpn": float(log["val/bpn"].dropna().iloc[-1])}


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
    git = runner.git_revision()
    return pd.DataFrame(
        [
            {**common, "set": name, "metric": m, "value": v, "git": git}
            for name, metrics in sets.items()
            for m, v in metrics.items()
        ]
    )


def replace_rows(path: Path, rows: pd.DataFrame, key: str = "point") -> None:
    """Write ``rows`` into the CSV, replacing earlier rows of the same points (``key``: the
    column that names them; fine-tuning rows are keyed by run) (atomic).

    Read-modify-write under a lock file beside the CSV, so shards of one grid running at the
    same time (``--shard``, one SLURM array task each) never drop each other's rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"):
        if path.exists():
            # as text: axis labels such as "3" must not come back as 3.0
            old = pd.read_csv(path, dtype=str, keep_default_na=False)
            rows = pd.concat([old[~old[key].isin(rows[key])], rows], ignore_index=True)
        with atomic_path(path) as tmp:
            rows.to_csv(tmp, index=False)


@dataclass(frozen=True)
class Shard:
    """Training point ``i`` of every ``n`` (``--shard 0/4``): independent workers, e.g. the
    tasks of a SLURM array, split one grid without coordination; each trains and samples only
    its points and merges its rows into the shared results file."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            index, count = (int(x) for x in text.split("/"))
        except ValueError:
            raise D3lmError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None
        if count < 1 or not 0 <= index < count:
            raise D3lmError(f"--shard {text!r}: need N >= 1 and 0 <= I < N")
        return cls(index, count)

    def select(self, items: Sequence[Any]) -> list[tuple[int, Any]]:
        """``(position in the whole grid, item)`` of this shard's items."""
        return [(i, x) for i, x in enumerate(items) if i % self.count == self.index]


# ---------------------------------------------------------------------------------------- run


def run_grid(
    plan: Plan,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
    shard: Shard = Shard(),
    rescore: bool = False,
) -> Path:
    """Train what is missing, sample and score every sampling point, write the result rows;
    return ``results/<experiment>.csv``. With ``dry_run`` only print what is done/missing;
    with ``shard`` only that shard's training points; with ``rescore`` score again every point
    that has samples (after a metric or oracle change), training and sampling nothing."""
    grid = plan.grid
    check_grid(plan)
    runner.git_revision()  # read now: rows name the code this process started with
    scorer = Scorer()
    samples = grid.sample_points()
    todo = grid.train_points()
    results: Path | None = None
    for i, (train, seed) in shard.select(todo):
        i += 1
        cfg = plan.config(train, seed)
        run_dir = runner.new_run_dir(cfg)
        results = Path(cfg.results_dir) / f"{plan.results}.csv"
        check_same_training(cfg, run_dir)
        status = train_status(cfg, run_dir)
        echo(f"[{i}/{len(todo)}] {run_dir}: training {status}")
        if rescore and status != "done":
            continue  # nothing of an unfinished model is scored
        if not dry_run and status != "done":
            train_point(cfg, run_dir)
        tokenizer = None if dry_run else runner.load_model(run_dir).tokenizer
        for sp in samples:
            scfg = plan.config(train, seed, sp)
            out = run_dir / "samples" / sp.name
            check_same_sampling(scfg, out)
            done = evaluated(out / "metrics.json", scfg.evaluate.features)
            has_fasta = (out / "samples.fasta").exists()
            state = "done" if done else "sampled" if has_fasta else "missing"
            echo(f"    {sp.name}: {state}")
            if dry_run or (rescore and not has_fasta):
                continue
            if not (out / "sample.yaml").exists():
                write_text(out / "sample.yaml", OmegaConf.to_yaml(scfg.sample))
            tokens = resolve_symbols(scfg, tokenizer)
            if done is None or rescore:
                if not has_fasta:
                    runner.sample(scfg, run_dir, out=out / "samples.fasta")
                done = scorer(scfg, out / "samples.fasta", out / "metrics.json")
            generated = {GENERATED: {**done.sets[GENERATED], **training_metrics(run_dir)}}
            labels = {**train.labels, **sp.labels}
            point = f"{run_dir.name}/{sp.name}"
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


__all__ = [
    "PLUGIN_KEYS",
    "SYMBOLS",
    "Grid",
    "Plan",
    "Point",
    "Scorer",
    "Shard",
    "check_plugins",
    "load_grid",
    "replace_rows",
    "run_grid",
]
