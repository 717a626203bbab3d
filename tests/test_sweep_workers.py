"""What a sweep worker does with its trials: pruned trials stop training and are reported, a
sampler sweep runs on a trained run (``--from-run``), a worker trains on one device or, under
torchrun, on two DDP ranks; and the commands the SLURM scripts (sweeps/slurm/) start, from their
dry runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sweep_helpers import (
    MICRO_SPACE,
    ROOT,
    SLURM,
    STEPS,
    check_trials,
    micro_overrides,
    worker_env,
    write_space,
)

from d3lm.config import load_config, load_run_config
from d3lm.errors import D3lmError
from d3lm.rundir import RunDir
from d3lm.stages.score import read_samples
from d3lm.stages.train import train
from d3lm.sweeps import load_space, run_worker
from d3lm.sweeps.report import report
from d3lm.sweeps.storage import open_storage
from d3lm.sweeps.worker import Team, device_overrides


@pytest.mark.slow
def test_pruned_trials_stop_training_and_are_reported(
    tmp_path: Path, dna_table: Path, one_thread: None
) -> None:
    """ThresholdPruner(upper=0.5): every bound is above it, so each trial stops at its first
    validation, keeps a checkpoint there, and counts towards N as PRUNED."""
    space_file = write_space(
        tmp_path, {**MICRO_SPACE, "pruner": {"name": "threshold", "upper": 0.5}}
    )
    url = f"sqlite:///{tmp_path / 'pruned.db'}"
    overrides = micro_overrides(tmp_path, dna_table)
    lines: list[str] = []
    run_worker(
        load_space(space_file, overrides),
        "pruned",
        url,
        2,
        overrides,
        heartbeat=1,
        echo=lines.append,
    )
    assert lines == ["study pruned: 2 pruned (target 2 finished)"]
    study = optuna.load_study(study_name="pruned", storage=url)
    for t in study.get_trials():
        assert t.state == TrialState.PRUNED
        assert list(t.intermediate_values) == [STEPS // 3]
        assert RunDir(Path(t.user_attrs["run_dir"])).trained_steps() == STEPS // 3
    text = report("pruned", url, tmp_path / "report")
    assert "best: none of 2 trials completed" in text
    assert "| 0 | PRUNED |" in text
    assert "importance.png: not drawn, 0 complete trial(s)" in text
    assert not (tmp_path / "report" / "importance.png").exists()


@pytest.mark.slow
def test_sampler_sweep_from_a_trained_run(
    tmp_path: Path, dna_table: Path, one_thread: None
) -> None:
    """--from-run: trials link one trained model, sample it (a ``per_token`` step count resolves
    from its tokenizer) and score a metric of metrics.json on the validation split."""
    overrides = micro_overrides(tmp_path, dna_table)
    base = train(load_config("micro", overrides=[*overrides, "experiment=base", "run=r0"]))
    space = {
        **MICRO_SPACE,
        "objective": {"metric": "fd_kmer", "direction": "minimize"},
        "config": {"evaluate": {"features": ["kmer"], "motifs": False}, "sample.n": 8},
        "params": {
            "sample.sampler.params.steps": [3, "per_token"],
            "sample.sampler.params.temperature": {"type": "float", "low": 0.8, "high": 1.2},
        },
    }
    path = write_space(tmp_path, space)
    url = f"journal://{tmp_path / 'j.log'}"
    run_worker(load_space(path, overrides, base), "fd", url, 2, overrides, heartbeat=1)
    trials = optuna.load_study(study_name="fd", storage=open_storage(url)).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for trial in trials:
        run_dir = Path(trial.user_attrs["run_dir"])
        assert (run_dir / "checkpoints" / "last.ckpt").samefile(base / "checkpoints" / "last.ckpt")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert trial.value == metrics["generated"]["fd_kmer"]
        assert {"real", "uniform", "shuffle", "markov"} <= set(metrics)
        assert len(read_samples(run_dir / "samples.fasta")) == 8
        saved = load_run_config(run_dir)
        assert (
            saved.sample.sampler.params.temperature
            == trial.params["sample.sampler.params.temperature"]
        )
        assert saved.evaluate.split == "valid"
    # a training key cannot be searched on a trained run
    trains = {**space, "params": {**space["params"], **MICRO_SPACE["params"]}}
    with pytest.raises(D3lmError, match=r"params\.optim\.lr: optim\.lr would need training"):
        load_space(write_space(tmp_path, trains, "trains"), overrides, base)


def test_one_process_worker_trains_on_one_device(tmp_path: Path) -> None:
    """Lightning's own launcher would re-run the sweep in every process it starts."""
    space = load_space(write_space(tmp_path, MICRO_SPACE))
    assert device_overrides(space, [], Team()) == ["trainer.devices=1"]  # "auto"
    assert device_overrides(space, ["trainer.devices=1"], Team()) == []
    with pytest.raises(D3lmError, match=r"trainer\.devices=2 but this worker runs 1 process"):
        device_overrides(space, ["trainer.devices=2"], Team())


@pytest.mark.slow
def test_ddp_trial_through_torchrun(tmp_path: Path, dna_table: Path) -> None:
    """The DDP variant on two CPU ranks (gloo): rank 0 asks the trials, rank 1 trains them too."""
    space = write_space(tmp_path, MICRO_SPACE)
    url = f"journal://{tmp_path / 'j.log'}"
    ddp = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]
    ddp += ["data.eval_batch_size=16"]  # a validation batch for each of the 2 ranks
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "d3lm.cli", "sweep", str(space), "--study", "ddp", "--storage", url]
    cmd += ["--n-trials", "1", "--heartbeat", "1", *micro_overrides(tmp_path, dna_table), *ddp]
    done = subprocess.run(cmd, env=worker_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    study = optuna.load_study(study_name="ddp", storage=open_storage(url))
    check_trials(study, 1, tmp_path / "runs" / "ddp", workers=1)
    assert len(study.trials) == 1  # rank 1 never asked for a trial


# ----------------------------------------------------------------------------------- SLURM scripts


def dry_run(script: str, *args: str, **env: str) -> list[str]:
    done = subprocess.run(
        ["bash", str(SLURM / script), *args],
        env={**os.environ, "DRY_RUN": "1", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()


def test_slurm_array_dry_run_prints_one_worker_per_task() -> None:
    out = dry_run(
        "array.sh",
        "sweeps/lr_warmup.yaml",
        "lr",
        "data.dataset=dhs",
        STORAGE="journal:///shared/sweeps/lr.log",
        WORKERS="3",
        N_TRIALS="40",
        SBATCH_ARGS="--partition=gpu --time=4:00:00",
    )
    worker = "d3lm sweep sweeps/lr_warmup.yaml --study lr --storage journal:///shared/sweeps/lr.log"
    assert out == [
        "sbatch --array=0-2 --gres=gpu:1 --partition=gpu --time=4:00:00 sweeps/slurm/array.sh "
        "sweeps/lr_warmup.yaml lr data.dataset=dhs",
        *(
            f"task {i}: {worker} --n-trials 40 --worker {i} --heartbeat 60 data.dataset=dhs"
            for i in range(3)
        ),
    ]


def test_slurm_ddp_dry_run_prints_torchrun_per_task() -> None:
    url = "postgresql://sweep@db/sweeps?sslmode=require"
    out = dry_run("ddp.sh", "sweeps/tokenizer.yaml", "tok", STORAGE=url, WORKERS="2", N_TRIALS="9")
    assert (
        out[0] == "sbatch --array=0-1 --gres=gpu:4 sweeps/slurm/array.sh sweeps/tokenizer.yaml tok"
    )
    torchrun = "python -m torch.distributed.run --standalone --nproc-per-node 4 -m d3lm.cli"
    quoted = url.replace("?", "\\?")
    assert out[1:] == [
        f"task {i}: {torchrun} sweep sweeps/tokenizer.yaml --study tok --storage {quoted} "
        f"--n-trials 9 --worker {i} --heartbeat 60 trainer.devices=4 trainer.strategy=ddp"
        for i in range(2)
    ]
    # inside array task 1: only that task's command
    inside = dry_run(
        "ddp.sh", "sweeps/tokenizer.yaml", "tok", STORAGE=url, N_TRIALS="9", SLURM_ARRAY_TASK_ID="1"
    )
    assert inside == [out[2].removeprefix("task 1: ")]


def test_slurm_script_needs_storage_and_trials() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("STORAGE", "N_TRIALS")}
    done = subprocess.run(
        ["bash", str(SLURM / "array.sh"), "s.yaml", "study"],
        env={**env, "DRY_RUN": "1"},
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "STORAGE" in done.stderr
