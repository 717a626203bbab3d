"""The one Lightning Trainer of pretraining, fine-tuning and sweep trials.

What every run shares is built here once: its loggers (``trainer.loggers``: CSV always, plus
TensorBoard, MLflow or Weights & Biases), the precision ``auto`` chose, the atomic checkpoint
writer, the signal handling, the learning-rate log and ``config.yaml``. A stage adds what is its
own: the checkpoints it keeps and its validation rhythm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

from d3lm.devices import check_accelerator
from d3lm.errors import D3lmError
from d3lm.lit.loggers import csv_logger
from d3lm.precision import AUTO, Choice, resolve
from d3lm.registry import LOGGERS
from d3lm.rundir import RunDir
from d3lm.stages.callbacks import (
    AtomicCheckpointIO,
    CPUTime,
    PrecisionNote,
    StopOnSignal,
    WriteConfig,
)

#: The logger every run has: ``RunDir.log`` and every table read its CSV.
ALWAYS = "csv"


def session_precision(cfg: DictConfig, run: RunDir) -> Choice:
    """This session's ``trainer.precision``: ``auto`` resolves on this machine
    (``precision.resolve``), except in a resumed run, which keeps what its config.yaml
    recorded (an ablation resumes with the grid's ``auto``)."""
    requested = cfg.trainer.precision
    saved = run.saved_config()
    if requested == AUTO and OmegaConf.select(cfg, "resume") and saved is not None:
        kept = OmegaConf.select(saved, "trainer.precision")
        if kept not in (None, AUTO):
            return Choice(
                resolve(kept, cfg.trainer.accelerator, None).precision, f"kept from {run.config}"
            )
    return resolve(requested, cfg.trainer.accelerator, OmegaConf.select(cfg, "cache_dir"))


def build_loggers(names: Sequence[str], run: RunDir) -> list[Any]:
    """``trainer.loggers``, each a registered logger plugin writing inside the run folder; the
    CSV logger comes first whether named or not (one ``logs/version_<k>`` per session)."""
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise D3lmError(f"trainer.loggers={names!r}: expected a list of logger names")
    extra = [n for n in names if n != ALWAYS]
    if len(set(extra)) != len(extra):
        raise D3lmError(f"trainer.loggers={list(names)}: a logger is named twice")
    for name in extra:
        LOGGERS.get(name)  # an unknown name fails before any logger starts
    return [csv_logger(run), *(LOGGERS.build(name, run=run) for name in extra)]


def build_trainer(
    cfg: DictConfig,
    run: RunDir,
    *,
    max_steps: int,
    val_check_interval: int,
    checkpoints: Sequence[L.Callback],
    callbacks: Sequence[L.Callback] = (),
    **options: Any,
) -> L.Trainer:
    """A trainer for ``run`` configured by ``cfg.trainer``: ``checkpoints`` are the stage's
    checkpoint (and early stopping) callbacks, ``callbacks`` come after the run's own (a
    sweep's pruning hook), ``options`` are the stage's other Trainer arguments.

    Under DDP the data modules share out the batches themselves
    (``use_distributed_sampler=False``): each process takes its slice of the global batch, in
    the one-process order.
    """
    t = cfg.trainer
    check_accelerator("trainer.accelerator", t.accelerator)
    precision = session_precision(cfg, run)
    return L.Trainer(
        max_steps=max_steps,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=OmegaConf.select(t, "num_nodes", default=1),
        strategy=OmegaConf.select(t, "strategy", default="auto"),
        use_distributed_sampler=False,
        precision=precision.precision,
        gradient_clip_val=t.gradient_clip_val,
        val_check_interval=val_check_interval,
        check_val_every_n_epoch=None,
        log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.enable_progress_bar,
        default_root_dir=run.path,
        logger=build_loggers(OmegaConf.select(t, "loggers", default=[ALWAYS]), run),
        callbacks=[
            *checkpoints,
            LearningRateMonitor(logging_interval="step"),
            CPUTime(),
            StopOnSignal(run.last),  # before WriteConfig: a run stopped as it starts writes none
            *([PrecisionNote(precision)] if precision.reason else []),
            WriteConfig(run, cfg),
            *callbacks,
        ],
        plugins=[AtomicCheckpointIO()],
        **options,
    )
