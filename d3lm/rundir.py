"""A run folder: the one place that knows its layout.

``runs/<experiment>/<run>/`` holds ``config.yaml`` (the resolved config, written as training
starts), ``checkpoints/last.ckpt`` (and a fine-tuning run's ``best.ckpt``), ``logs/version_<k>/``
(one CSV log per session: the first and every resume), ``samples.fasta`` (with its provenance
``samples.json``, :func:`provenance_of`) and ``metrics.json``; an ablation's sampling points live
in ``samples/<point>/`` (``sample.yaml``, ``samples.fasta``, ``samples.json``,
``metrics.json``). Every stage, experiment and command asks a :class:`RunDir` for these paths,
so the layout is written once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from d3lm.errors import NotFound

CONFIG = "config.yaml"
METRICS = "metrics.json"
#: Beside a metrics.json of labelled samples: the oracle's confusion matrix (intended x predicted).
CONFUSION = "confusion.csv"
SAMPLES = "samples.fasta"
CHECKPOINTS = "checkpoints"
LOGS = "logs"


def provenance_of(fasta: str | os.PathLike[str]) -> Path:
    """The JSON sidecar saying how ``fasta`` was sampled: ``samples.json`` beside
    ``samples.fasta``, ``<stem>.json`` beside any other FASTA (``<name>.json`` beside one that is
    itself named ``.json``, so the two never coincide)."""
    path = Path(fasta)
    if path.suffix == ".json":
        return path.with_name(f"{path.name}.json")
    return path.with_suffix(".json")


@dataclass(frozen=True)
class SamplePoint:
    """``samples/<point>/`` of a run: one sampling setting's samples and scores."""

    path: Path

    @property
    def settings(self) -> Path:
        return self.path / "sample.yaml"

    @property
    def fasta(self) -> Path:
        return self.path / SAMPLES

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def confusion(self) -> Path:
        return self.path / CONFUSION


@dataclass(frozen=True)
class RunDir:
    """Paths, config, checkpoints, status and logs of one run folder."""

    path: Path

    def __init__(self, path: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "path", Path(path))

    @classmethod
    def of(cls, cfg: DictConfig) -> RunDir:
        """The folder a config names: ``runs_dir/experiment/run`` (run: the start time when
        unnamed)."""
        name = cfg.run or time.strftime("%Y%m%d-%H%M%S")
        return cls(Path(cfg.runs_dir) / cfg.experiment / name)

    def __str__(self) -> str:
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    # -- files -------------------------------------------------------------------------------

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def last(self) -> Path:
        """``checkpoints/last.ckpt``: what a resume continues and a sampler loads."""
        return self.checkpoints / "last.ckpt"

    @property
    def best(self) -> Path:
        """``checkpoints/best.ckpt``: a fine-tuning run's best validation checkpoint."""
        return self.checkpoints / "best.ckpt"

    @property
    def logs(self) -> Path:
        return self.path / LOGS

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def confusion(self) -> Path:
        return self.path / CONFUSION

    @property
    def samples(self) -> Path:
        """``samples.fasta`` of ``d3lm sample``/``demo``."""
        return self.path / SAMPLES

    def sample_point(self, name: str) -> SamplePoint:
        return SamplePoint(self.path / "samples" / name)

    # -- state -------------------------------------------------------------------------------

    def last_checkpoint(self) -> Path:
        """``checkpoints/last.ckpt``; a run without one is ``NotFound`` naming the folder."""
        if not self.last.exists():
            raise NotFound(f"{self.path}: no {CHECKPOINTS}/last.ckpt to resume or sample from")
        return self.last

    def trained_steps(self) -> int | None:
        """The global step of ``last.ckpt``, or None without one."""
        if not self.last.exists():
            return None
        ckpt = torch.load(self.last, map_location="cpu", weights_only=False, mmap=True)
        return int(ckpt["global_step"])

    def saved_config(self) -> DictConfig | None:
        """The run's ``config.yaml``, or None before training started."""
        if not self.config.is_file():
            return None
        cfg = OmegaConf.load(self.config)
        assert isinstance(cfg, DictConfig)
        return cfg

    def started(self) -> bool:
        """Whether the folder holds a run: a checkpoint or scores."""
        return self.metrics.exists() or self.last.exists()

    def discard(self) -> None:
        """Remove what a new run writes before its first checkpoint, then the folder if empty."""
        with contextlib.suppress(FileNotFoundError):
            self.config.unlink()
        for sub in (self.logs, self.checkpoints):
            shutil.rmtree(sub, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.path.rmdir()

    def log(self) -> pd.DataFrame:
        """The training log across all sessions (first run and every resume), in order."""
        paths = sorted(
            self.logs.glob("version_*/metrics.csv"),
            key=lambda p: int(p.parent.name.split("_")[1]),
        )
        if not paths:
            raise FileNotFoundError(f"{self.path}: no {LOGS}/version_*/metrics.csv")
        return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
