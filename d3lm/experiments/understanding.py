"""The understanding table: pretrain one model per objective, fine-tune every initialisation on
every labelled task and seed, tidy rows.

A grid file (``experiments/understanding.yaml``) names the pretraining runs (``pretrain.models``:
an init label and the overrides that make that model; all share ``pretrain.config`` so they see
the same corpus, batches and steps: equal compute), the tasks with their params, and extra
checkpoints (an imported NT v2 run). Every run is an ordinary run folder:
``runs/<experiment>-<scale>-pretrain/<model>/`` (``d3lm train``) and
``runs/<experiment>-<scale>/<task>-<init>-seed<seed>/`` (``d3lm finetune``), and the fine-tuning
rows go to ``results/<experiment>-<scale>.csv``. Finished work is never redone: a pretraining
run that reached ``max_steps`` is reused (a shorter one resumes), a fine-tuning run with its
``metrics.json`` only rewrites its rows, and an interrupted one resumes from ``last.ckpt``.

Genomic tasks built with non-default params (tiny uses 200-bp windows) are added to the corpus's
held-out windows, so no pretraining window overlaps any window a model is evaluated on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig

from d3lm.config import EXPERIMENTS_DIR, dotlist, flatten, load_config, plain
from d3lm.data.benchmarks import DEFAULT_LENGTHS
from d3lm.errors import D3lmError, NotFound
from d3lm.experiments.grid import Shard, parse_seeds
from d3lm.experiments.reuse import check_same_training
from d3lm.plugins import load_plugins
from d3lm.registry import TASKS, WILDCARD
from d3lm.rundir import RunDir
from d3lm.stages.classifier import RANDOM
from d3lm.stages.finetune import finetune as finetune_run
from d3lm.stages.finetune import load_finetune_config, run_folder, task_label, task_table
from d3lm.stages.results import git_revision
from d3lm.stages.train import train_point, train_status

GRID = EXPERIMENTS_DIR / "understanding.yaml"
KEYS = {"experiment", "title", "seeds", "pretrain", "finetune", "checkpoints"}


@dataclass
class UnderstandingGrid:
    source: str
    experiment: str
    seeds: list[int]
    models: dict[str, dict[str, Any]]
    tasks: dict[str, dict[str, Any]]
    pretrain: dict[str, Any] = field(default_factory=dict)
    pretrain_by_scale: dict[str, dict[str, Any]] = field(default_factory=dict)
    finetune: dict[str, Any] = field(default_factory=dict)
    finetune_by_scale: dict[str, dict[str, Any]] = field(default_factory=dict)
    task_params_by_scale: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    checkpoints: dict[str, str] = field(default_factory=dict)

    @property
    def inits(self) -> list[str]:
        """Random init first (every table's baseline), then the pretrained models and the
        extra checkpoints."""
        return [RANDOM, *self.models, *self.checkpoints]


def _section(path: Path, raw: Mapping[str, Any], name: str, known: set[str]) -> dict[str, Any]:
    section = raw.get(name) or {}
    if not isinstance(section, Mapping):
        raise D3lmError(f"{path}: `{name}` must be a mapping")
    unknown = set(section) - known
    if unknown:
        raise D3lmError(f"{path}: unknown keys under `{name}`: {sorted(unknown)}")
    return dict(section)


def load_grid(
    path: str | Path = GRID, seeds: int | Sequence[int] | None = None
) -> UnderstandingGrid:
    """Parse a grid file; task and model names are checked before any work."""
    load_plugins()
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"{path}: no such understanding grid file")
    raw = yaml.safe_load(path.read_text()) or {}
    unknown = set(raw) - KEYS
    if unknown:
        raise D3lmError(f"{path}: unknown grid keys {sorted(unknown)}")
    pre = _section(path, raw, "pretrain", {"config", "by_scale", "models"})
    fin = _section(path, raw, "finetune", {"config", "by_scale", "tasks", "task_params_by_scale"})
    models = {str(k): flatten(v or {}) for k, v in (pre.get("models") or {}).items()}
    given = fin.get("tasks") or {}
    given = {WILDCARD: {}} if given == WILDCARD else given  # "*": every registered task
    tasks = {str(k): dict(v or {}) for k, v in given.items()}
    tasks = {t: tasks.get(t, tasks.get(WILDCARD, {})) for t in TASKS.expand(list(tasks))}
    if not tasks:
        raise D3lmError(f"{path}: `finetune.tasks` names no task")
    for task in tasks:
        if not Path(task).suffix and task not in TASKS:
            raise D3lmError(f"{path}: unknown task {task!r}; known: {', '.join(TASKS.names())}")
    checkpoints = {str(k): str(v) for k, v in (raw.get("checkpoints") or {}).items()}
    clash = {RANDOM} & {*models, *checkpoints} | set(models) & set(checkpoints)
    if clash:
        raise D3lmError(f"{path}: init label(s) {sorted(clash)} used twice")
    seeds_at = "--seeds" if seeds is not None else f"{path}: seeds"
    return UnderstandingGrid(
        source=str(path),
        experiment=str(raw.get("experiment", path.stem)),
        seeds=parse_seeds(seeds_at, raw.get("seeds", 3) if seeds is None else seeds),
        models=models,
        tasks=tasks,
        pretrain=flatten(pre.get("config") or {}),
        pretrain_by_scale={k: flatten(v or {}) for k, v in (pre.get("by_scale") or {}).items()},
        finetune=flatten(fin.get("config") or {}),
        finetune_by_scale={k: flatten(v or {}) for k, v in (fin.get("by_scale") or {}).items()},
        task_params_by_scale={
            k: {t: dict(p or {}) for t, p in (v or {}).items()}
            for k, v in (fin.get("task_params_by_scale") or {}).items()
        },
        checkpoints=checkpoints,
    )


@dataclass
class UnderstandingPlan:
    """A grid resolved against a scale and the user's overrides of every pretraining run."""

    grid: UnderstandingGrid
    scale: str | None
    overrides: list[str] = field(default_factory=list)

    def name(self, suffix: str = "") -> str:
        base = f"{self.grid.experiment}-{self.scale}" if self.scale else self.grid.experiment
        return base + suffix

    def task_params(self, task: str) -> dict[str, Any]:
        scaled = self.grid.task_params_by_scale.get(self.scale or "", {}).get(task, {})
        return {**self.grid.tasks[task], **scaled}

    def held_out(self) -> list[dict[str, Any]]:
        """Genomic tasks at non-default params: the corpus holds their windows out too."""
        return [
            {"task": task, **params}
            for task in self.grid.tasks
            if task in DEFAULT_LENGTHS and (params := self.task_params(task))
        ]

    def pretrain_config(self, model: str) -> DictConfig:
        layers = {**self.grid.pretrain, **self.grid.pretrain_by_scale.get(self.scale or "", {})}
        identity = {"experiment": self.name("-pretrain"), "run": model}
        cfg = load_config(
            self.scale,
            overrides=[
                *dotlist(layers),
                *dotlist(self.grid.models[model]),
                *self.overrides,
                *dotlist(identity),
            ],
        )
        if cfg.data.dataset == "chromosomes" and self.held_out():
            cfg.data.params.held_out = self.held_out()
        return cfg

    def checkpoint(self, init: str) -> str:
        if init == RANDOM:
            return "none"
        if init in self.grid.checkpoints:
            return self.grid.checkpoints[init]
        return str(RunDir.of(self.pretrain_config(init)))

    def finetune_config(self, task: str, init: str, seed: int) -> DictConfig:
        layers = {**self.grid.finetune, **self.grid.finetune_by_scale.get(self.scale or "", {})}
        identity = {
            "experiment": self.name(),
            "run": f"{task_label(task)}-{init}-seed{seed}",
            "task": task,
            "checkpoint": self.checkpoint(init),
            "seed": seed,
        }
        if init == RANDOM and self.grid.models:
            # the same backbone and tokenizer as the pretrained models, untrained
            first = self.pretrain_config(next(iter(self.grid.models)))
            identity["model.preset"] = first.model.preset
            identity["tokenizer.name"] = first.tokenizer.name
            layers = {
                **layers,
                **flatten({"model": {"params": plain(first.model.params)}}),
                **flatten({"tokenizer": {"params": plain(first.tokenizer.params)}}),
            }
        params = flatten({"task_params": self.task_params(task)})
        return load_finetune_config(overrides=[*dotlist(layers), *dotlist({**identity, **params})])


def run_understanding(
    plan: UnderstandingPlan,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
    shard: Shard | None = None,
) -> Path:
    """Pretrain what is missing, then fine-tune every (task, init, seed) of this shard; return
    ``results/<experiment>-<scale>.csv``. Every shard pretrains what its points need first, so
    start shards after one worker has pretrained (or accept that two may train the same model:
    the second resumes the first's checkpoint at each save)."""
    grid, shard = plan.grid, shard or Shard()
    git_revision()  # read now: rows name the code this process started with
    points = [(t, i, s) for t in grid.tasks for i in grid.inits for s in grid.seeds]
    mine = shard.select(points)
    needed = [m for m in grid.models if any(i == m for _, (_, i, _) in mine)]
    for model in needed:
        cfg = plan.pretrain_config(model)
        run = RunDir.of(cfg)
        check_same_training(cfg, run.path)
        status = train_status(cfg, run)
        echo(f"pretrain {model}: {run}: {status}")
        if not dry_run and status != "done":
            train_point(cfg, run)
    tables: dict[str, Any] = {}
    results = Path()
    for n, (task, init, seed) in mine:
        cfg = plan.finetune_config(task, init, seed)
        run = run_folder(cfg)
        results = Path(cfg.results_dir) / f"{cfg.experiment}.csv"
        done = run.metrics.exists()
        echo(f"[{n + 1}/{len(points)}] {run}: {'done' if done else 'missing'}")
        if dry_run:
            continue
        if task not in tables:
            tables[task] = task_table(cfg)
        finetune_run(cfg, table=tables[task])
    if not mine:
        raise D3lmError(f"{grid.source}: no points for shard {shard.index}/{shard.count}")
    if not dry_run:
        echo(f"results: {results}")
    return results


__all__ = ["UnderstandingGrid", "UnderstandingPlan", "load_grid", "run_understanding"]
