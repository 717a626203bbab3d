"""Experiment trackers a run logs to (``trainer.loggers``), each writing inside the runs folder.

CSV is every run's own log (``logs/version_<k>/metrics.csv``: tables and sweeps read it). The
others are the trackers cluster users already run, all usable without a network: TensorBoard
event files in ``<run>/tensorboard/``; MLflow in a local SQLite store shared by the experiment's
runs (``runs/<experiment>/mlflow.db``; MLflow 3 retired its plain-file store), or
``$MLFLOW_TRACKING_URI`` (a cluster's tracking server); Weights & Biases offline unless
``WANDB_MODE`` says otherwise (``wandb sync`` uploads later). A plugin may register more: a
factory taking the run folder and returning a Lightning logger.
"""

from __future__ import annotations

import importlib.util
import os

from lightning.pytorch.loggers import (
    CSVLogger,
    Logger,
    MLFlowLogger,
    TensorBoardLogger,
    WandbLogger,
)

from d3lm.errors import D3lmError
from d3lm.registry import LOGGERS
from d3lm.rundir import LOGS, RunDir

#: The MLflow server the process was started with: read once, because MLflow itself sets the
#: variable to the first run's store, which would send every later run of the process there.
TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


def _needs(module: str, package: str, logger: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise D3lmError(
            f"trainer.loggers: {logger} needs the {package} package (pip install {package})"
        )


@LOGGERS.register("csv")
def csv_logger(run: RunDir) -> Logger:
    """CSV metrics per session in ``logs/version_<k>/`` (always on)."""
    return CSVLogger(run.path, name=LOGS)


@LOGGERS.register("tensorboard")
def tensorboard_logger(run: RunDir) -> Logger:
    """TensorBoard event files in ``<run>/tensorboard/version_<k>/``."""
    _needs("tensorboard", "tensorboard", "tensorboard")
    return TensorBoardLogger(run.path, name="tensorboard", default_hp_metric=False)


@LOGGERS.register("mlflow")
def mlflow_logger(run: RunDir) -> Logger:
    """MLflow: experiment = the runs' experiment folder, run name = the run folder's name."""
    _needs("mlflow", "mlflow", "mlflow")
    store = (run.path.parent / "mlflow.db").resolve()
    uri = TRACKING_URI or f"sqlite:///{store}"
    return MLFlowLogger(experiment_name=run.path.parent.name, run_name=run.name, tracking_uri=uri)


@LOGGERS.register("wandb")
def wandb_logger(run: RunDir) -> Logger:
    """Weights & Biases in ``<run>/wandb/``, offline unless ``WANDB_MODE`` is set."""
    _needs("wandb", "wandb", "wandb")
    offline = os.environ.get("WANDB_MODE", "offline") == "offline"
    return WandbLogger(
        project=run.path.parent.name, name=run.name, save_dir=str(run.path), offline=offline
    )
