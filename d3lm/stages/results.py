"""Result rows: tidy CSVs in ``results/`` that every table reads, written under a lock."""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock
from omegaconf import DictConfig

from d3lm.config import plain
from d3lm.io import atomic_path


@functools.cache
def git_revision() -> str:
    """The checkout's revision, read once per process: a long job records the code it loaded,
    not a commit made while it ran."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def axes(cfg: DictConfig) -> dict[str, Any]:
    """The ablation axes of a run, as flat columns of its result rows."""
    return {
        "tokenizer": cfg.tokenizer.name,
        "tokenizer_params": json.dumps(plain(cfg.tokenizer.params), sort_keys=True),
        "model": cfg.model.preset,
        "schedule": cfg.diffusion.schedule.name,
        "sampler": cfg.sample.sampler.name,
        "sampler_params": json.dumps(plain(cfg.sample.sampler.params), sort_keys=True),
        "seed": cfg.seed,
    }


def append_results(cfg: DictConfig, run_dir: Path, metrics: dict[str, float]) -> Path:
    """Add one tidy row per metric to results/<experiment>.csv (rewritten atomically)."""
    path = Path(cfg.results_dir) / f"{cfg.experiment}.csv"
    rows = pd.DataFrame(
        [
            {"run": Path(run_dir).name, **axes(cfg), "metric": k, "value": v, "git": git_revision()}
            for k, v in metrics.items()
        ]
    )
    if path.exists():
        old = pd.read_csv(path)
        rows = pd.concat([old[old["run"] != Path(run_dir).name], rows], ignore_index=True)
    with atomic_path(path) as tmp:
        rows.to_csv(tmp, index=False)
    return path


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
