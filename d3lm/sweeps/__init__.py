"""Optuna sweeps over d3lm configs: search-space files, storages, workers and reports."""

from d3lm.sweeps.space import Space, load_space
from d3lm.sweeps.storage import open_storage
from d3lm.sweeps.worker import run_worker

__all__ = ["Space", "load_space", "open_storage", "run_worker"]
