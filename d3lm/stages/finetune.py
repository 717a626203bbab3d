"""Fine-tune any checkpoint on a labelled task.

:func:`finetune` turns a config (``experiments/finetune.yaml``) into a run folder
``runs/<experiment>/<run>/``: ``config.yaml``, ``checkpoints/best.ckpt`` (best ``val/mcc``) and
``last.ckpt``, ``logs/`` and ``metrics.json`` (the best checkpoint's validation and test
scores), plus tidy rows in ``results/<experiment>.csv``. What a user can get wrong (a tokenizer
other than the checkpoint's, a record longer than the backbone's context, a plugin name) is
refused before any training. A finished run is not redone; an interrupted one resumes from
``last.ckpt``, with the data order and RNGs it would have had.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from omegaconf import DictConfig

from d3lm import interrupt, runlock
from d3lm.config import FINETUNE_YAML, config_ranges, flatten, load_config, plain
from d3lm.devices import check_accelerator
from d3lm.errors import D3lmError
from d3lm.io import write_text
from d3lm.lit.classifier import METRICS
from d3lm.lit.labelled_data import LabelledData
from d3lm.model import CLASSIFIER_HEADS, POOLINGS
from d3lm.precision import AUTO
from d3lm.rundir import CHECKPOINTS, RunDir
from d3lm.stages.callbacks import stopped_at
from d3lm.stages.checkpoints import read_checkpoint
from d3lm.stages.classifier import (
    CLASS_WEIGHTS,
    CLASSIFIER_HPARAMS,
    encode_splits,
    init_name,
    load_classifier,
    new_model,
)
from d3lm.stages.ranges import check_ranges
from d3lm.stages.results import git_revision, replace_rows
from d3lm.stages.train import RunExists
from d3lm.stages.trainer import build_trainer
from d3lm.tasks import LabelledTable, load_task

#: Table split -> the prefix its scores are logged under.
SCORED_SPLITS = {"valid": "val", "test": "test"}

#: Keys that say where or how a run computes, not what: rerunning with them changed is the run.
PLACE_KEYS = {
    "experiment",
    "run",
    "runs_dir",
    "results_dir",
    "cache_dir",
    "eval_batch_size",
    "num_workers",
    "trainer",
}

RANGES: dict[str, tuple[Callable[[float], bool], str]] = config_ranges(FINETUNE_YAML)


def load_finetune_config(
    files: Sequence[str | Path] = (), overrides: Sequence[str] = ()
) -> DictConfig:
    """finetune.yaml <- ``files`` <- ``key=value`` overrides; an undeclared key is an error."""
    return load_config(files=files, overrides=overrides, base_file=FINETUNE_YAML)


def task_label(task: str) -> str:
    """A registered task's name, or a label file's name without its suffixes."""
    path = Path(str(task))
    return path.name.split(".")[0] if path.suffix else str(task)


def run_folder(cfg: DictConfig) -> RunDir:
    name = cfg.run or f"{task_label(cfg.task)}-{init_name(cfg.checkpoint)}-seed{cfg.seed}"
    return RunDir(Path(cfg.runs_dir) / cfg.experiment / name)


def check_same_run(run: RunDir, cfg: DictConfig) -> None:
    """A run folder that holds a checkpoint or results belongs to the config saved in it:
    rerunning it with other settings would mix two runs, so that is refused, naming a key."""
    config = run.saved_config()
    if not run.started() or config is None:
        return
    saved = flatten(plain(config))
    now = flatten(plain(cfg))
    if now.get("trainer.precision") == AUTO:  # config.yaml holds what `auto` chose
        now["trainer.precision"] = saved.get("trainer.precision")
    differ = sorted(
        key
        for key in saved.keys() | now.keys()
        if key.split(".")[0] not in PLACE_KEYS and saved.get(key) != now.get(key)
    )
    if differ:
        key = differ[0]
        raise RunExists(
            f"{run} holds a run with other settings ({key}={saved.get(key)!r} there, "
            f"{now.get(key)!r} now); choose another run=NAME"
        )


def check_plugins(cfg: DictConfig) -> None:
    """Names the config gives (pooling, head, class weights, accelerator), checked before any
    work."""
    POOLINGS.get(cfg.pooling)
    check_accelerator("trainer.accelerator", cfg.trainer.accelerator)
    CLASSIFIER_HEADS.check(cfg.head.name, plain(cfg.head.params))
    if cfg.class_weights not in CLASS_WEIGHTS:
        raise D3lmError(
            f"class_weights={cfg.class_weights!r}: expected one of {', '.join(CLASS_WEIGHTS)}"
        )


def classifier_trainer(
    cfg: DictConfig,
    run: RunDir,
    total: int,
    callbacks: Sequence[L.Callback] = (),
    validate: bool = True,
) -> L.Trainer:
    """Validation every ``val_check_interval`` steps; the best ``val/mcc`` is kept as
    ``best.ckpt``, ``patience`` validations without improvement stop the run. Without
    ``validate`` (no validation split) the run trains all its steps and keeps ``last.ckpt``
    alone, saved as often, for a resume."""
    every = min(cfg.val_check_interval, total)
    if validate:
        watch: list[L.Callback] = [
            ModelCheckpoint(
                dirpath=run.checkpoints,
                filename=run.best.stem,
                monitor="val/mcc",
                mode="max",
                save_top_k=1,
                save_last=True,
                auto_insert_metric_name=False,
                enable_version_counter=False,
            ),
            EarlyStopping(
                monitor="val/mcc", mode="max", patience=cfg.patience, check_on_train_epoch_end=False
            ),
        ]
    else:
        watch = [
            ModelCheckpoint(
                dirpath=run.checkpoints, every_n_train_steps=every, save_top_k=0, save_last=True
            )
        ]
    return build_trainer(
        cfg,
        run,
        max_steps=total,
        val_check_interval=every,
        checkpoints=watch,
        callbacks=callbacks,
        limit_val_batches=None if validate else 0,
        num_sanity_val_steps=0,
        enable_model_summary=False,
    )


def task_table(cfg: DictConfig) -> LabelledTable:
    """The labelled task a fine-tuning config names, with its params and split fractions."""
    return load_task(
        cfg.task,
        Path(cfg.cache_dir),
        valid_fraction=cfg.valid_fraction,
        test_fraction=cfg.test_fraction,
        num_classes=cfg.num_classes,
        params=plain(cfg.task_params) or None,
    )


def finetune(
    cfg: DictConfig, callbacks: Sequence[L.Callback] = (), table: LabelledTable | None = None
) -> Path:
    """Fine-tune (or resume, or skip when finished) the run ``cfg`` describes; return its
    folder. ``table``: the task already loaded (default: ``load_task(cfg.task)``);
    ``callbacks`` are added to the trainer's. The run folder is locked while this process
    works in it (``runlock``); SIGTERM or SIGINT stops training at the end of a step with a
    checkpoint of that step (``StopOnSignal``), from which the same call resumes."""
    check_ranges(cfg, RANGES)
    check_plugins(cfg)
    run = run_folder(cfg)
    with runlock.hold(run.path):
        try:
            return _finetune(cfg, run, callbacks, table)
        except interrupt.Interrupted as err:
            stopped_at(err, run)
            raise


def _finetune(
    cfg: DictConfig,
    run: RunDir,
    callbacks: Sequence[L.Callback],
    table: LabelledTable | None,
) -> Path:
    check_same_run(run, cfg)
    done = run.metrics
    if done.exists():
        write_rows(cfg, run, json.loads(done.read_text(encoding="utf-8")))
        return run.path
    if table is None:
        table = task_table(cfg)
    for note in table.notes:
        rank_zero_info(note)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    last = run.last
    resume = last.exists()
    model = load_classifier(last, resume=True) if resume else new_model(cfg, table)
    if list(model.hparams.classes) != list(table.info.classes):
        raise D3lmError(
            f"{last}: trained on classes {list(model.hparams.classes)}, the task has "
            f"{list(table.info.classes)}"
        )
    # valid_fraction=0 asks for no validation split: train every step, score the last one
    splits = encode_splits(model, table, optional=() if cfg.valid_fraction else ("valid",))
    validate = "valid" in splits
    data = LabelledData(splits, cfg.batch_size, cfg.eval_batch_size, cfg.seed, cfg.num_workers)
    if data.steps_per_epoch() < 1:
        raise D3lmError(
            f"{table.source}: {len(data.datasets['train'])} training records, fewer than one "
            f"batch of batch_size={cfg.batch_size}"
        )
    total = cfg.max_steps if cfg.max_epochs is None else cfg.max_epochs * data.steps_per_epoch()
    run_cfg = cfg.copy()
    run_cfg.run = run.name
    trainer = classifier_trainer(run_cfg, run, total, callbacks, validate)
    if cfg.batch_size % trainer.world_size:
        raise D3lmError(
            f"batch_size={cfg.batch_size} does not divide among {trainer.world_size} processes"
        )
    with interrupt.deferred():
        trainer.fit(model, datamodule=data, ckpt_path=last if resume else None, weights_only=True)
        trainer.save_checkpoint(last, weights_only=False)
    best = Path(trainer.checkpoint_callback.best_model_path) if validate else last
    metrics: dict[str, Any] = {
        "task": task_label(cfg.task),
        "init": init_name(cfg.checkpoint),
        "seed": cfg.seed,
        "classes": list(table.info.classes),
        "best_checkpoint": f"{CHECKPOINTS}/{best.name}",
        "best_step": read_checkpoint(best, hparams=CLASSIFIER_HPARAMS)["global_step"],
        "steps": trainer.global_step,
        "git": git_revision(),
        **({"notes": list(table.notes)} if table.notes else {}),
    }
    for split, prefix in SCORED_SPLITS.items():
        if split not in splits:
            continue
        evaluate = trainer.validate if split == "valid" else trainer.test
        scores = evaluate(model, datamodule=data, ckpt_path=best, verbose=False, weights_only=True)
        metrics[split] = {name: float(scores[0][f"{prefix}/{name}"]) for name in METRICS}
    if trainer.is_global_zero:
        write_text(done, json.dumps(metrics, indent=2) + "\n")
        write_rows(cfg, run, metrics)
    return run.path


def write_rows(cfg: DictConfig, run: RunDir, metrics: dict[str, Any]) -> Path:
    """The run's tidy rows (one per split and metric) into results/<experiment>.csv, replacing
    its earlier rows, under a file lock."""
    path = Path(cfg.results_dir) / f"{cfg.experiment}.csv"
    rows = pd.DataFrame(
        [
            {
                "run": run.name,
                "task": metrics["task"],
                "init": metrics["init"],
                "seed": metrics["seed"],
                "split": split,
                "metric": name,
                "value": metrics[split][name],
                "git": metrics["git"],
            }
            for split in SCORED_SPLITS
            if split in metrics
            for name in METRICS
        ]
    )
    replace_rows(path, rows, key="run")
    return path


def summary(run_dir: Path) -> str:
    """One line on a finished run: task, init, test scores and its folder, from metrics.json
    (a DDP process other than the first, which writes no metrics.json, names the folder)."""
    done = RunDir(run_dir).metrics
    if not done.exists():
        return str(run_dir)
    metrics = json.loads(done.read_text(encoding="utf-8"))
    scores = ", ".join(f"{name} {metrics['test'][name]:.4f}" for name in METRICS)
    return f"{metrics['task']} (init {metrics['init']}): test {scores}; run {run_dir}"
