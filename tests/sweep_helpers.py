"""What the sweep tests (tests/test_sweep_*.py) share: a micro search space written to a file, the
overrides that train its trials in a few steps under the test folder, the environment of a worker
process, and the check that a study lost and duplicated no trial."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from d3lm.rundir import RunDir
from d3lm.stages.results import git_revision

ROOT = Path(__file__).parents[1]
SLURM = ROOT / "sweeps" / "slurm"
STEPS = 9  # per trial: validations at 3, 6, 9
MICRO_SPACE = {
    "scale": "micro",
    "objective": {"metric": "val/bpn", "direction": "minimize"},
    "sampler": {"name": "tpe", "seed": 0, "n_startup_trials": 2},
    "pruner": "none",
    "params": {
        "optim.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
        "optim.warmup_steps": {"type": "int", "low": 0, "high": 10, "step": 5},
    },
}
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def write_space(tmp_path: Path, space: dict, name: str = "space") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def micro_overrides(root: Path, data: Path) -> list[str]:
    return [
        f"data.dataset={data}",
        f"runs_dir={root / 'runs'}",
        f"results_dir={root / 'results'}",
        f"cache_dir={root / 'cache'}",
        f"trainer.max_steps={STEPS}",
        f"trainer.val_check_interval={STEPS // 3}",
    ]


def worker_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def check_trials(study: optuna.Study, n: int, runs: Path, workers: int) -> list[FrozenTrial]:
    """Every trial numbered once, in its own run folder, nothing left running; N finished
    (at most one more per extra worker: workers that start their last trials at one moment)."""
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(len(trials)))
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    finished = [t for t in trials if t.state in FINISHED]
    assert n <= len(finished) <= n + workers - 1
    dirs = [t.user_attrs["run_dir"] for t in trials]
    assert dirs == [str(runs / f"trial-{t.number}") for t in trials]
    assert sorted(p.name for p in runs.glob("trial-*")) == sorted(Path(d).name for d in dirs)
    for t in trials:
        assert t.user_attrs["git"] == git_revision()
        if t.state == TrialState.COMPLETE:
            run_dir = Path(t.user_attrs["run_dir"])
            assert RunDir(run_dir).trained_steps() == STEPS
            assert t.value == RunDir(run_dir).log()["val/bpn"].dropna().iloc[-1]
    return trials
