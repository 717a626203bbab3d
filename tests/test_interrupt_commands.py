"""Interrupted commands that run other runs: SIGTERM ends an ablation grid, a sweep or a fine-tune
with exit code 143 and one line that says where it stopped and the command that continues it;
that command reaches the uninterrupted grid results and fine-tuned weights bit for bit, and a sweep
trial ends FAIL, is queued again and completes; a SLURM sweep task hands SIGTERM to its worker and
requeues itself. Real signals to real ``d3lm`` processes, sent once a checkpoint exists."""

from __future__ import annotations

import signal
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from conftest import sweep_space
from interrupt_helpers import (
    PINNED,
    ROOT,
    STEPS,
    assert_same_weights,
    d3lm,
    fake_slurm,
    finish,
    interrupt_when,
    interrupted,
    start,
    step_of,
    wait_for,
)
from optuna.trial import TrialState

# ---------------------------------------------------------------- grids, sweeps, fine-tuning


def grid_file(path: Path) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "experiment": "intr",
                "seeds": [0],
                "config": {"evaluate": {"features": ["kmer"], "motifs": False}},
                "by_scale": {"micro": {"sample.n": 12, "sample.workers": 1}},
            }
        )
    )
    return path


@pytest.mark.slow
def test_an_interrupted_ablation_grid_resumes_to_the_uninterrupted_results(
    dna_table: Path, tmp_path: Path
) -> None:
    grid = grid_file(tmp_path / "grid.yaml")

    def grid_args(root: Path) -> list[str]:
        return [
            "ablation",
            str(grid),
            "--scale",
            "micro",
            f"data.dataset={dna_table}",
            f"runs_dir={root / 'runs'}",
            f"results_dir={root / 'results'}",
            f"cache_dir={root / 'cache'}",
            *PINNED,
        ]

    finish(d3lm(*grid_args(tmp_path / "whole")), tmp_path / "whole.log")
    argv = d3lm(*grid_args(tmp_path / "cut"))
    run_dir = tmp_path / "cut" / "runs" / "intr-micro" / "default-s0"
    proc = start(argv, tmp_path / "cut.log")
    output = interrupt_when(
        run_dir / "checkpoints" / "last.ckpt", proc, tmp_path / "cut.log", signal.SIGTERM
    )
    line, again = interrupted(proc, output, signal.SIGTERM)
    assert f": {run_dir} stopped at step {step_of(run_dir)}, saved in " in line
    assert again == argv and not (tmp_path / "cut" / "results").exists()
    finish(again, tmp_path / "again.log")
    assert_same_weights(tmp_path / "whole" / "runs" / "intr-micro" / "default-s0", run_dir)
    rows = [  # every value but the wall time of sampling, which no two runs share
        pd.read_csv(root / "results" / "intr-micro.csv")
        .drop(columns="git")
        .query("metric != 'sample_s_per_1000'")
        for root in (tmp_path / "whole", tmp_path / "cut")
    ]
    pd.testing.assert_frame_equal(rows[0], rows[1])


def sweep_overrides(dna_table: Path, tmp_path: Path) -> list[str]:
    return [
        f"data.dataset={dna_table}",
        f"runs_dir={tmp_path / 'runs'}",
        f"results_dir={tmp_path / 'results'}",
        f"cache_dir={tmp_path / 'cache'}",
        *PINNED,
    ]


@pytest.mark.slow
def test_an_interrupted_sweep_trial_fails_is_queued_again_and_completes(
    dna_table: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    argv = d3lm("sweep", str(sweep_space(tmp_path)), "--study", "s", "--storage", url)
    argv += ["--n-trials", "1", "--heartbeat", "1", *sweep_overrides(dna_table, tmp_path)]
    first = tmp_path / "runs" / "s" / "trial-0"
    proc = start(argv, tmp_path / "first.log")
    output = interrupt_when(
        first / "checkpoints" / "last.ckpt", proc, tmp_path / "first.log", signal.SIGTERM
    )
    line, again = interrupted(proc, output, signal.SIGTERM)
    assert f": {first} stopped at step {step_of(first)}, saved in " in line
    assert "; trial 0 of study s marked FAIL and queued again; to continue: " in line
    study = optuna.load_study(study_name="s", storage=url)
    failed, retry = study.get_trials()
    assert (failed.state, retry.state) == (TrialState.FAIL, TrialState.WAITING)
    assert retry.params == failed.params and retry.system_attrs["failed_trial"] == 0
    assert again == argv
    finish(again, tmp_path / "again.log")
    trials = optuna.load_study(study_name="s", storage=url).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].params == failed.params
    assert step_of(tmp_path / "runs" / "s" / "trial-1") == STEPS


@pytest.mark.slow
def test_a_slurm_sweep_task_passes_sigterm_to_its_worker_and_requeues_itself(
    dna_table: Path, tmp_path: Path
) -> None:
    """sweeps/slurm/array.sh inside an array task: ``--signal=B:TERM`` signals the task's shell,
    which hands SIGTERM to its worker; the worker fails and re-queues its trial and exits 143,
    and the task requeues itself."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    env = fake_slurm(tmp_path / "bin")
    env.update(SLURM_ARRAY_TASK_ID="0", STORAGE=url, N_TRIALS="1", HEARTBEAT="1")
    task = ["bash", str(ROOT / "sweeps" / "slurm" / "array.sh"), str(sweep_space(tmp_path)), "s"]
    log = tmp_path / "task.log"
    proc = start([*task, *sweep_overrides(dna_table, tmp_path)], log, env)
    wait_for(tmp_path / "runs" / "s" / "trial-0" / "checkpoints" / "last.ckpt", proc, log)
    proc.send_signal(signal.SIGTERM)  # the batch shell, as SLURM signals it
    assert proc.wait(timeout=300) == 143, log.read_text()[-3000:]
    line, _ = interrupted(proc, log.read_text(), signal.SIGTERM)
    assert "; trial 0 of study s marked FAIL and queued again; " in line
    assert Path(env["SCONTROL_LOG"]).read_text() == "requeue 77\n"


@pytest.mark.slow
def test_an_interrupted_fine_tune_resumes_to_the_uninterrupted_weights(
    dna_table: Path, tmp_path: Path
) -> None:
    def finetune_args(root: Path) -> list[str]:
        return [
            "finetune",
            f"task={dna_table}",
            f"runs_dir={root / 'runs'}",
            f"results_dir={root / 'results'}",
            f"cache_dir={root / 'cache'}",
            "model.preset=micro",
            "tokenizer.name=kmer",
            "tokenizer.params.k=3",
            "pooling=mean",
            "batch_size=16",
            f"max_steps={STEPS}",
            "val_check_interval=10",
            "warmup_steps=2",
            "patience=50",
            "trainer.precision=32-true",
            "trainer.log_every_n_steps=1",
        ]

    finish(d3lm(*finetune_args(tmp_path / "whole")), tmp_path / "whole.log")
    argv = d3lm(*finetune_args(tmp_path / "cut"))
    run_dir = tmp_path / "cut" / "runs" / "finetune" / "fixture-random-seed0"
    proc = start(argv, tmp_path / "cut.log")
    output = interrupt_when(
        run_dir / "checkpoints" / "last.ckpt", proc, tmp_path / "cut.log", signal.SIGTERM
    )
    line, again = interrupted(proc, output, signal.SIGTERM)
    assert f": {run_dir} stopped at step {step_of(run_dir)}, saved in " in line
    assert again == argv and not (run_dir / "metrics.json").exists()
    finish(again, tmp_path / "again.log")
    whole = tmp_path / "whole" / "runs" / "finetune" / "fixture-random-seed0"
    assert_same_weights(whole, run_dir)
    metrics = [yaml.safe_load((r / "metrics.json").read_text()) for r in (whole, run_dir)]
    for split in ("valid", "test"):
        assert metrics[0][split] == metrics[1][split]
