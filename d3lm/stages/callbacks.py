"""The run's own Lightning callbacks and checkpoint I/O, shared by pretraining and fine-tuning."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from omegaconf import DictConfig, OmegaConf

from d3lm import interrupt
from d3lm.io import atomic_path, write_text
from d3lm.precision import AUTO, Choice
from d3lm.rundir import RunDir
from d3lm.stages.checkpoints import read_checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints go to a temporary file first, so an interrupted save never corrupts last.ckpt."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike[str], storage_options: Any = None
    ) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


class CPUTime(L.Callback):
    """Logs ``time/cpu_s``: this process's CPU seconds spent in training so far, carried across
    resumes, so learning curves can be drawn against compute on a shared or throttled machine."""

    def __init__(self) -> None:
        self.spent = 0.0
        self.start = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.process_time()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        pl_module.log("time/cpu_s", self.spent + time.process_time() - self.start)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.spent += time.process_time() - self.start

    def state_dict(self) -> dict[str, float]:
        return {"spent": self.spent + time.process_time() - self.start}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self.spent = state_dict["spent"]


class WriteConfig(L.Callback):
    """Writes the run's ``config.yaml`` (rank 0) when training starts: after a resume's
    checkpoint has been restored, so a resume that fails leaves the saved config as it was.
    ``trainer.precision: auto`` is written as what it chose, so a resume keeps it."""

    def __init__(self, run: RunDir, cfg: DictConfig) -> None:
        self.path, self.cfg = run.config, cfg

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            cfg = self.cfg
            if OmegaConf.select(cfg, "trainer.precision") == AUTO:
                cfg = OmegaConf.merge(cfg, {"trainer": {"precision": trainer.precision}})
            write_text(self.path, OmegaConf.to_yaml(cfg))


class StopOnSignal(L.Callback):
    """Stops training on SIGTERM or SIGINT (noted by ``interrupt.deferred`` around ``fit``) after
    a step: saves a checkpoint of that step where and as the periodic ones are saved
    (``on_train_batch_end``, atomically), so a resume loses nothing and continues bit for bit,
    and raises ``Interrupted`` as the next step starts, once the step's log row is written.
    Under DDP the ranks agree first, so all save and stop at one step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.signum = 0  #: the signal a checkpoint was saved for

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        interrupt.take_back()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        interrupt.take_back()
        signum = self._agreed(trainer)
        if signum:  # nothing trained in this session yet: nothing to save
            raise interrupt.Interrupted(signum)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        self.signum = self._agreed(trainer)
        if self.signum:
            trainer.save_checkpoint(self.path, weights_only=False)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        if self.signum:
            raise interrupt.Interrupted(self.signum)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        interrupt.drop()  # a signal in the last step: the run is finished, nothing to stop

    def _agreed(self, trainer: L.Trainer) -> int:
        """The signal noted on any rank, or 0."""
        signum = interrupt.pending()
        if trainer.world_size > 1:
            noted = torch.tensor(signum, device=trainer.strategy.root_device)
            signum = int(trainer.strategy.reduce(noted, reduce_op="max"))
        return signum


def stopped_at(err: interrupt.Interrupted, run: RunDir) -> None:
    """Say where an interrupted training left ``run``: its checkpoint's step, or none."""
    if run.last.exists():
        step = read_checkpoint(run.last, hparams=())["global_step"]
        err.where = err.where or f"{run} stopped at step {step}, saved in {run.last}"
        err.run_dir = run.path
    else:
        err.where = err.where or f"{run} stopped before its first checkpoint"


class PrecisionNote(L.Callback):
    """Says what ``trainer.precision: auto`` chose and why, as training starts: one line on the
    Lightning logger (stderr) and ``precision``/``precision_reason`` in the session's
    ``logs/version_<k>/hparams.yaml``."""

    def __init__(self, choice: Choice) -> None:
        self.choice = choice

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rank_zero_info(self.choice.line())
        if trainer.is_global_zero and trainer.logger is not None:
            trainer.logger.log_hyperparams(
                {"precision": self.choice.precision, "precision_reason": self.choice.reason}
            )
