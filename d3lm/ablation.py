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

import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from d3lm import runner
from d3lm.config import EXPERIMENTS_DIR, dotlist, flatten, load_config
from d3lm.errors import D3lmError, NotFound
from d3lm.evaluate import EvaluateOptions, build_extractors, evaluate_samples, write_metrics
from d3lm.io import atomic_path, write_text
from d3lm.metrics.motifs import MotifScanner
from d3lm.plugins import load_plugins
from d3lm.registry import (
    BACKBONES,
    COMMIT_COUNTS,
    OBJECTIVES,
    REMASKERS,
    SAMPLERS,
    SCHEDULES,
    TOKENIZERS,
    UNMASK_ORDERS,
    Registry,
)

GRIDS_DIR = EXPERIMENTS_DIR / "ablations"
WILDCARD = "*"
GENERATED = runner.GENERATED

#: Config keys that name a plugin: a ``"*"`` value there expands to every registered name.
PLUGIN_KEYS: dict[str, Registry[Any]] = {
    "tokenizer.name": TOKENIZERS,
    "model.preset": BACKBONES,
    "diffusion.schedule.name": SCHEDULES,
    "diffusion.objective.name": OBJECTIVES,
    "sample.sampler.name": SAMPLERS,
    "sample.sampler.params.order": UNMASK_ORDERS,
    "sample.sampler.params.count": COMMIT_COUNTS,
    "sample.sampler.params.remasker": REMASKERS,
}


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


def load_grid(name: str | Path, seeds: int | Sequence[int] | None = None) -> Grid:
    """Parse and expand a grid file; wildcards expand against the registries now."""
    load_plugins()
    path = grid_path(name)
    raw = yaml.safe_load(path.read_text()) or {}
    known = {"experiment", "models", "seeds", "config", "by_scale", "train", "sample"}
    unknown = set(raw) - known
    if unknown:
        raise D3lmError(f"{path}: unknown grid keys {sorted(unknown)}")
    seeds = raw.get("seeds", 3) if seeds is None else seeds
    return Grid(
        name=path.stem,
        source=str(path),
        experiment=raw.get("experiment", f"ablation-{path.stem}"),
        models=raw.get("models"),
        train=[_axis(path, n, spec) for n, spec in (raw.get("train") or {}).items()],
        sample=[_axis(path, n, spec) for n, spec in (raw.get("sample") or {}).items()],
        seeds=list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds],
        config=flatten(raw.get("config") or {}),
        by_scale={k: flatten(v or {}) for k, v in (raw.get("by_scale") or {}).items()},
    )


def _axis(path: Path, name: str, spec: Any) -> Axis:
    if isinstance(spec, Mapping):
        key, values = spec.get("key"), spec.get("values")
    else:
        key, values = name, spec
    values = [values] if isinstance(values, str) else values
    if not isinstance(values, list) or not values:
        raise D3lmError(f"{path}: axis {name!r} needs a non-empty list of values")
    settings: list[Setting] = []
    for value in values:
        if value == WILDCARD:
            if key not in PLUGIN_KEYS:
                raise D3lmError(
                    f"{path}: axis {name!r}: '*' needs a plugin key ({', '.join(PLUGIN_KEYS)}), "
                    f"got {key!r}"
                )
            listed = {s.label for s in settings} | {v for v in values if isinstance(v, str)}
            settings += [Setting(n, {key: n}) for n in PLUGIN_KEYS[key].names() if n not in listed]
        elif isinstance(value, Mapping):
            if "label" not in value or not isinstance(value.get("set"), Mapping):
                raise D3lmError(f"{path}: axis {name!r}: {value} needs `label` and `set`")
            settings.append(Setting(str(value["label"]), flatten(value["set"])))
        elif key is None:
            raise D3lmError(f"{path}: axis {name!r} has scalar values but no `key`")
        else:
            settings.append(Setting(str(value), {key: value}))
    labels = [s.label for s in settings]
    bad = [label for label in labels if not label or any(c in label for c in "/\\ \t")]
    if bad:
        raise D3lmError(f"{path}: axis {name!r}: labels must be folder-name safe, got {bad}")
    if len(set(labels)) != len(labels):
        raise D3lmError(f"{path}: axis {name!r} repeats a label: {labels}")
    return Axis(name, tuple(settings))


def check_plugins(grid: Grid) -> None:
    """Every plugin a grid names must be registered (fails before any training starts)."""
    for axis in [*grid.train, *grid.sample]:
        for setting in axis.settings:
            for key, value in setting.overrides.items():
                registry = PLUGIN_KEYS.get(key)
                if registry is not None and value not in registry:
                    raise D3lmError(
                        f"{grid.source}: axis {axis.name!r} value {setting.label!r} sets "
                        f"{key}={value!r}, not a registered {registry.kind} "
                        f"(known: {', '.join(registry.names())})"
                    )


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


def evaluated(metrics: Path, features: Iterable[str]) -> dict[str, dict[str, float]] | None:
    """A sample point's metrics when complete (every requested ``fd_<feature>``), else None."""
    if not metrics.exists():
        return None
    nested = json.loads(metrics.read_text())
    generated = nested.get(GENERATED, {})
    return nested if all(f"fd_{f}" in generated for f in features) else None


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
    from scratch (its aborted logs go too, so the log is one clean session)."""
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
        params = OmegaConf.to_container(cfg.evaluate.params, resolve=True)
        assert isinstance(params, dict)
        return EvaluateOptions(
            features={f: dict(params.get(f, {})) for f in cfg.evaluate.features},
            baselines={b: dict(params.get(b, {})) for b in cfg.evaluate.baselines},
            split=cfg.evaluate.split,
            motifs=cfg.evaluate.motifs,
            seed=cfg.seed,
        )

    def baseline_file(self, cfg: DictConfig, options: EvaluateOptions) -> Path:
        data_params = OmegaConf.to_container(cfg.data.params, resolve=True)
        key = {
            "dataset": str(cfg.data.dataset),
            # only when set, so baselines cached before data.params existed keep their names
            **({"data_params": data_params} if data_params else {}),
            "n": cfg.sample.n,
            "bp": cfg.sample.bp,
            "options": [options.features, options.baselines, options.split, options.motifs],
            "seed": options.seed,
        }
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
        name = f"n{cfg.sample.n}-bp{cfg.sample.bp}-s{cfg.seed}-{digest}.json"
        return Path(cfg.runs_dir) / cfg.experiment / "baselines" / name

    def __call__(self, cfg: DictConfig, samples: Path, out: Path) -> dict[str, dict[str, float]]:
        """Score ``samples``; write ``out`` (metrics.json: {set: {metric: value}}, every set)."""
        options = self.options(cfg)
        cached = self.baseline_file(cfg, options)
        if cached.exists():
            options.baselines = {}
        reference, train = self.data(cfg)
        spec = json.dumps(options.features, sort_keys=True)
        if spec not in self._extractors:
            self._extractors[spec] = build_extractors(options.features, Path(cfg.cache_dir))
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
        write_text(out, json.dumps(sets, indent=2, sort_keys=True) + "\n")
        return sets


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
) -> pd.DataFrame:
    """Tidy rows of one point: every axis as a column, the seed, n, bp and the token count."""
    common = {
        "experiment": plan.results,
        "point": point,
        **{a.name: labels.get(a.name) for a in [*plan.grid.train, *plan.grid.sample]},
        "seed": cfg.seed,
        "n": cfg.sample.n,
        "bp": cfg.sample.bp,
        "tokens": tokens,
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
) -> Path:
    """Train what is missing, sample and score every sampling point, write the result rows;
    return ``results/<experiment>.csv``. With ``dry_run`` only print what is done/missing;
    with ``shard`` only that shard's training points."""
    grid = plan.grid
    check_plugins(grid)
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
            if dry_run:
                continue
            if not (out / "sample.yaml").exists():
                write_text(out / "sample.yaml", OmegaConf.to_yaml(scfg.sample))
            tokens = resolve_symbols(scfg, tokenizer)
            if done is None:
                if not has_fasta:
                    runner.sample(scfg, run_dir, out=out / "samples.fasta")
                done = scorer(scfg, out / "samples.fasta", out / "metrics.json")
            generated = {GENERATED: {**done[GENERATED], **training_metrics(run_dir)}}
            labels = {**train.labels, **sp.labels}
            rows = point_rows(plan, scfg, labels, f"{run_dir.name}/{sp.name}", generated, tokens)
            references = {k: v for k, v in done.items() if k != GENERATED}
            ref_point = f"reference-n{scfg.sample.n}-bp{scfg.sample.bp}-s{seed}"
            rows = pd.concat(
                [rows, point_rows(plan, scfg, {}, ref_point, references, None)],
                ignore_index=True,
            )
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
