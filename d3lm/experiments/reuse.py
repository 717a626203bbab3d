"""When a run folder or a sampling point may be reused by an experiment: the same settings only.

Grids share trained runs (``models:``) and name sampling points alike, so a folder trained or
sampled with other settings is an error naming the folder, never silently reused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from d3lm.config import completed
from d3lm.errors import D3lmError
from d3lm.rundir import RunDir, SamplePoint

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
    "conditioning",
)


def check_same_training(cfg: DictConfig, run_dir: Path) -> None:
    """A run folder trained with other settings (another grid, scale or override) is an error,
    never silently reused."""
    run = RunDir(run_dir)
    old = run.saved_config()
    if old is None or run.trained_steps() is None:
        return
    old = completed(old)  # keys added since it was trained take their defaults
    differ = [k for k in TRAINING_KEYS if OmegaConf.select(old, k) != OmegaConf.select(cfg, k)]
    if differ:
        raise D3lmError(
            f"{run_dir}: trained with other {', '.join(differ)} than this grid point asks for; "
            "remove the folder or choose another runs_dir"
        )


def check_same_sampling(cfg: DictConfig, point: SamplePoint) -> None:
    """A sample point folder is reused only for the same ``sample`` settings (grids that share
    trained runs may name sample points alike); its ``sample.yaml`` records them."""
    saved = point.settings
    if saved.exists() and _drawn(completed(OmegaConf.load(saved), "sample")) != _drawn(cfg.sample):
        raise D3lmError(
            f"{point.path}: sampled with other settings than this grid point asks for ({saved}); "
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
