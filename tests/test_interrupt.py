"""Interruptions: SIGTERM and SIGINT end every long command with exit code 143 / 130 and one line
on stderr that says where it stopped and the command that continues it, never a traceback; that
command reaches the uninterrupted result bit for bit (training, an ablation grid, a fine-tune), a
sweep trial ends FAIL and queued again, a SLURM requeue (the job's command run again) resumes,
and one run folder takes one writer at a time.

The subprocess tests send real signals to real ``d3lm`` processes once a checkpoint exists;
the in-process ones send the signal from a callback at a chosen step, so the step is exact.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import optuna
import pandas as pd
import pytest
import torch
import yaml
from conftest import micro_config, sweep_space
from optuna.trial import TrialState

from d3lm import interrupt, runlock
from d3lm.interrupt import Interrupted
from d3lm.rundir import RunDir
from d3lm.runlock import RunBusy
from d3lm.stages.checkpoints import read_checkpoint
from d3lm.stages.train import train

ROOT = Path(__file__).parents[1]
#: Training steps of every run here; checkpoints every EVERY steps, validation every 10.
STEPS, EVERY = 40, 5
PINNED = [
    f"trainer.max_steps={STEPS}",
    f"trainer.checkpoint_every_n_steps={EVERY}",
    "trainer.precision=32-true",
]
CODE = {signal.SIGTERM: 143, signal.SIGINT: 130}


# ------------------------------------------------------------------------------------- helpers


def d3lm(*args: str) -> list[str]:
    return [sys.executable, "-m", "d3lm.cli", *args]


def start(
    argv: list[str], log: Path, env: dict[str, str] | None = None, **options: object
) -> subprocess.Popen[bytes]:
    """``argv`` in a fresh single-threaded process, its stdout and stderr into ``log``."""
    env = env or {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(log, "wb") as out:
        return subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, **options
        )


def wait_for(path: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(
                f"exited {proc.returncode} before {path} existed:\n{log.read_text()[-3000:]}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {path} after {timeout} s")
        time.sleep(0.01)


def interrupt_when(path: Path, proc: subprocess.Popen[bytes], log: Path, signum: int) -> str:
    """Send ``signum`` once ``path`` exists; return the process's output."""
    wait_for(path, proc, log)
    proc.send_signal(signum)
    proc.wait(timeout=300)
    return log.read_text()


def interrupted(proc: subprocess.Popen[bytes], output: str, signum: int) -> tuple[str, list[str]]:
    """The interruption line (checked: exit code, one line, no traceback) and the argv of the
    command it gives to continue."""
    assert proc.returncode == CODE[signum], output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    line = output.strip().splitlines()[-1]
    assert line.startswith(f"d3lm: interrupted by {signal.Signals(signum).name}: "), line
    assert line.count("; to continue: d3lm ") == 1, line
    words = shlex.split(line.split("; to continue: ", 1)[1])
    return line, d3lm(*words[1:])


def finish(argv: list[str], log: Path, env: dict[str, str] | None = None) -> str:
    proc = start(argv, log, env)
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    return log.read_text()


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run_dir / "checkpoints" / "last.ckpt", hparams=())["state_dict"]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not differ, f"{len(differ)} tensors differ, first {differ[0]}"


def step_of(run_dir: Path) -> int:
    return read_checkpoint(run_dir / "checkpoints" / "last.ckpt", hparams=())["global_step"]


def train_args(table: Path, root: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--scale",
        "micro",
        f"data.dataset={table}",
        f"runs_dir={root / 'runs'}",
        f"cache_dir={root / 'cache'}",
        "experiment=e",
        *PINNED,
        *extra,
    ]


@pytest.fixture(scope="module")
def whole(dna_table: Path, tmp_path_factory: pytest.TempPathFactory, one_thread) -> Path:
    """The uninterrupted micro run every interrupted training here must end equal to."""
    root = tmp_path_factory.mktemp("whole")
    return train(micro_config(dna_table, root, "experiment=e", "run=whole", *PINNED))


# ---------------------------------------------------------------------- the signal machinery


@pytest.fixture
def handled() -> Iterator[None]:
    with interrupt.signals():
        yield


def test_a_deferred_signal_is_noted_and_raised_when_the_block_ends(handled) -> None:
    with pytest.raises(Interrupted) as stop, interrupt.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # schedulers repeat SIGTERM: still only noted
        assert interrupt.pending() == signal.SIGTERM
    assert (stop.value.code, stop.value.name) == (143, "SIGTERM")
    assert interrupt.pending() == 0


def test_a_second_sigint_while_deferred_stops_at_once(handled) -> None:
    reached = []
    with pytest.raises(Interrupted) as stop, interrupt.deferred():
        os.kill(os.getpid(), signal.SIGINT)
        reached.append("after the first")
        os.kill(os.getpid(), signal.SIGINT)
        reached.append("after the second")
    assert reached == ["after the first"] and stop.value.code == 130
    assert interrupt.pending() == 0


def test_a_signal_outside_deferred_raises_where_the_program_is(handled) -> None:
    with pytest.raises(Interrupted) as stop, interrupt.at("outer"):
        os.kill(os.getpid(), signal.SIGINT)
    assert str(stop.value) == "interrupted by SIGINT: outer"
    with pytest.raises(Interrupted) as stop, interrupt.at("outer"), interrupt.at("inner"):
        os.kill(os.getpid(), signal.SIGTERM)
    assert str(stop.value) == "interrupted by SIGTERM: inner"


def test_signals_restores_the_handlers_it_replaced() -> None:
    before = [signal.getsignal(s) for s in interrupt.SIGNALS]
    with interrupt.signals():
        assert all(
            signal.getsignal(s) is not b for s, b in zip(interrupt.SIGNALS, before, strict=True)
        )
    assert [signal.getsignal(s) for s in interrupt.SIGNALS] == before


# ----------------------------------------------------------------------------------- locks

HOLDER = (
    "import sys\n"
    "from d3lm import runlock\n"
    "with runlock.hold(sys.argv[1]):\n"
    "    print('held', flush=True)\n"
    "    sys.stdin.read()\n"
)


def hold_elsewhere(run_dir: Path) -> subprocess.Popen[str]:
    """Another process holding ``run_dir`` until its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_folder_held_by_another_process_is_refused_naming_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "e" / "r"
    other = hold_elsewhere(run_dir)
    try:
        with pytest.raises(RunBusy) as refused, runlock.hold(run_dir):
            pass
        assert f"{run_dir}: in use by pid {other.pid} on " in str(refused.value)
    finally:
        assert other.stdin is not None
        other.stdin.close()
        other.wait()
    with runlock.hold(run_dir), runlock.hold(run_dir):  # free again; nested holds are one
        assert runlock.lock_file(run_dir).exists()
    assert not (tmp_path / "runs").exists()  # the lock left nothing behind


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    other = hold_elsewhere(run_dir)
    other.kill()
    other.wait()
    assert runlock.lock_file(run_dir).exists()  # the file stays; the kernel dropped the lock
    with runlock.hold(run_dir):
        assert str(os.getpid()) in runlock.lock_file(run_dir).read_text()


# --------------------------------------------------------------- training, signal in-process


class SignalAt(L.Callback):
    """Sends this process ``signum`` as training step ``step`` starts (0: as training starts)."""

    def __init__(self, signum: int, step: int) -> None:
        self.signum, self.step = signum, step

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.step == 0:
            os.kill(os.getpid(), self.signum)

    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        if self.step and trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def log_columns(run_dir: Path) -> dict[str, pd.DataFrame]:
    log = RunDir(run_dir).log()
    return {
        c: log.dropna(subset=[c])[["step", c]].reset_index(drop=True)
        for c in ("train/loss", "val/bpn")
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "step"),
    [(signal.SIGTERM, 9), (signal.SIGINT, 13)],
    ids=["sigterm-at-a-validation-step", "sigint"],
)
def test_a_signal_stops_training_after_its_step_and_the_run_resumes_exactly(
    whole: Path, dna_table: Path, tmp_path: Path, one_thread, handled, signum: int, step: int
) -> None:
    """Step 9 is a validation step: the checkpoint is of step 10, the validation after it still
    runs, and the resumed run logs neither a step nor a validation twice."""
    cfg = micro_config(dna_table, tmp_path, "experiment=e", "run=cut", *PINNED)
    run_dir = tmp_path / "e" / "cut"
    with pytest.raises(Interrupted) as stop:
        train(cfg, callbacks=[SignalAt(signum, step)])
    last = run_dir / "checkpoints" / "last.ckpt"
    assert stop.value.code == CODE[signum]
    assert stop.value.where == f"{run_dir} stopped at step {step + 1}, saved in {last}"
    assert step_of(run_dir) == step + 1 and interrupt.pending() == 0
    assert not runlock.lock_file(run_dir).exists()
    train(micro_config(dna_table, tmp_path, "experiment=e", "run=cut", *PINNED))
    assert_same_weights(whole, run_dir)
    for column, rows in log_columns(whole).items():
        assert log_columns(run_dir)[column].equals(rows), column


@pytest.mark.slow
def test_a_signal_before_the_first_step_leaves_no_folder(
    dna_table: Path, tmp_path: Path, one_thread, handled
) -> None:
    cfg = micro_config(dna_table, tmp_path, "experiment=e", "run=early", *PINNED)
    with pytest.raises(Interrupted) as stop:
        train(cfg, callbacks=[SignalAt(signal.SIGTERM, 0)])
    assert stop.value.where == f"{tmp_path / 'e' / 'early'} stopped before its first checkpoint"
    assert stop.value.run_dir is None
    assert not (tmp_path / "e").exists()


# -------------------------------------------------------------- training, real signals (CLI)


@pytest.mark.slow
def test_sigterm_exits_143_and_the_same_command_resumes_to_the_same_weights(
    whole: Path, dna_table: Path, tmp_path: Path
) -> None:
    argv = d3lm(*train_args(dna_table, tmp_path, "run=named"))
    run_dir = tmp_path / "runs" / "e" / "named"
    proc = start(argv, tmp_path / "first.log")
    output = interrupt_when(
        run_dir / "checkpoints" / "last.ckpt", proc, tmp_path / "first.log", signal.SIGTERM
    )
    line, again = interrupted(proc, output, signal.SIGTERM)
    step = step_of(run_dir)
    assert EVERY <= step < STEPS
    last = run_dir / "checkpoints" / "last.ckpt"
    assert f": {run_dir} stopped at step {step}, saved in {last}; " in line
    assert again == argv  # a named run continues with the very same command
    output = finish(again, tmp_path / "again.log")
    assert f"continuing it from step {step}" in output
    assert_same_weights(whole, run_dir)
    assert sorted(p.name for p in (run_dir / "logs").iterdir()) == ["version_0", "version_1"]


@pytest.mark.slow
def test_ctrl_c_exits_130_and_an_unnamed_run_is_continued_by_the_printed_command(
    whole: Path, dna_table: Path, tmp_path: Path
) -> None:
    argv = d3lm(*train_args(dna_table, tmp_path))
    log = tmp_path / "first.log"
    proc = start(argv, log)
    experiment = tmp_path / "runs" / "e"
    deadline = time.monotonic() + 300
    while not list(experiment.glob("*/checkpoints/last.ckpt")) and time.monotonic() < deadline:
        time.sleep(0.01)
    (run_dir,) = (p.parents[1] for p in experiment.glob("*/checkpoints/last.ckpt"))
    output = interrupt_when(run_dir / "checkpoints" / "last.ckpt", proc, log, signal.SIGINT)
    _, again = interrupted(proc, output, signal.SIGINT)
    assert again == [*argv, f"run={run_dir.name}"]  # the timestamped name, pinned
    finish(again, tmp_path / "again.log")
    assert_same_weights(whole, run_dir)


def fake_slurm(bin_dir: Path) -> dict[str, str]:
    """``srun`` that runs its command in place (recording its pid), ``scontrol`` that records
    its arguments, and the environment of a SLURM job without its task variables."""
    bin_dir.mkdir()
    scripts = {
        "srun": 'while [[ $1 == --* ]]; do shift; done\necho $$ > "$SRUN_PID"\nexec "$@"\n',
        "scontrol": 'echo "$@" >> "$SCONTROL_LOG"\n',
        "d3lm": f'exec {shlex.quote(sys.executable)} -m d3lm.cli "$@"\n',
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/usr/bin/env bash\n{body}")
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return {
        **env,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLURM_JOB_ID": "77",
        "NODES": "1",
        "GPUS_PER_NODE": "1",
        "D3LM": str(bin_dir / "d3lm"),
        "SRUN_PID": str(bin_dir / "srun.pid"),
        "SCONTROL_LOG": str(bin_dir / "scontrol.log"),
        "OMP_NUM_THREADS": "1",
    }


@pytest.mark.slow
def test_a_slurm_job_stopped_by_sigterm_requeues_itself_and_resumes(
    whole: Path, dna_table: Path, tmp_path: Path
) -> None:
    """cluster/train.sbatch as SLURM runs it: SIGTERM to the task (``--signal=TERM@120``), exit
    143, ``scontrol requeue``; the requeued job runs the same script again and resumes."""
    env = fake_slurm(tmp_path / "bin")
    cpu = ["trainer.accelerator=cpu", "trainer.strategy=auto", "trainer.devices=1"]
    job = ["bash", str(ROOT / "cluster" / "train.sbatch"), *train_args(dna_table, tmp_path)[1:]]
    job += cpu
    run_dir = tmp_path / "runs" / "e" / "slurm-77"
    log = tmp_path / "job.log"
    proc = start(job, log, env)
    wait_for(run_dir / "checkpoints" / "last.ckpt", proc, log)
    os.kill(int(Path(env["SRUN_PID"]).read_text()), signal.SIGTERM)  # the task, not the script
    assert proc.wait(timeout=300) == 143, log.read_text()[-3000:]
    interrupted(proc, log.read_text(), signal.SIGTERM)
    assert Path(env["SCONTROL_LOG"]).read_text() == "requeue 77\n"
    assert EVERY <= step_of(run_dir) < STEPS
    assert "continuing it from step" in finish(job, tmp_path / "requeued.log", env)
    assert Path(env["SCONTROL_LOG"]).read_text() == "requeue 77\n"  # not again
    assert_same_weights(whole, run_dir)


@pytest.mark.slow
def test_two_trainings_into_one_folder_one_is_refused_the_other_completes(
    dna_table: Path, tmp_path: Path
) -> None:
    steps = 150  # long enough that the second reaches the lock while the first trains
    argv = d3lm(*train_args(dna_table, tmp_path, "run=same", f"trainer.max_steps={steps}"))
    procs = [start(argv, tmp_path / f"{i}.log") for i in range(2)]
    codes = [p.wait(timeout=600) for p in procs]
    assert sorted(codes) == [0, 2], [log.read_text()[-2000:] for log in tmp_path.glob("*.log")]
    refused = procs[codes.index(2)]
    winner = procs[codes.index(0)]
    run_dir = tmp_path / "runs" / "e" / "same"
    message = (tmp_path / f"{procs.index(refused)}.log").read_text().strip().splitlines()
    assert message[-1].startswith(f"d3lm: error: {run_dir}: in use by pid {winner.pid} on ")
    assert "Traceback" not in "\n".join(message)
    assert [p.name for p in (run_dir / "logs").iterdir()] == ["version_0"]
    log = RunDir(run_dir).log().dropna(subset=["train/loss"])
    assert log["step"].tolist() == list(range(steps))  # one session, nothing interleaved
    assert not runlock.lock_file(run_dir).exists()


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
    rows = [
        pd.read_csv(root / "results" / "intr-micro.csv").drop(columns="git")
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


# --------------------------------------------------------------------------------- sampling


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "group"),
    [(signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["ctrl-c-to-the-process-group", "sigterm-to-the-main-process"],
)
def test_a_signal_during_sampling_stops_every_worker_without_a_traceback(
    whole: Path, tmp_path: Path, signum: int, group: bool
) -> None:
    """Ctrl-C in a terminal signals the whole process group, the workers too; SIGTERM reaches
    the main process alone, which stops its workers itself."""
    out = tmp_path / "samples.fasta"
    argv = d3lm("sample", str(whole), "--n", "4096", "--workers", "2", "--out", str(out))
    log = tmp_path / "sample.log"
    proc = start(argv, log, start_new_session=True)  # a process group of its own, as in a shell
    deadline = time.monotonic() + 300
    while len(workers := children(proc.pid)) < 2 and proc.poll() is None:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.01)
    time.sleep(1)  # the workers are importing or sampling
    if group:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    proc.wait(timeout=120)
    line, again = interrupted(proc, log.read_text(), signum)
    assert f": sampling from {whole} stopped, {out} not written; " in line
    assert again == argv and not out.exists()
    deadline = time.monotonic() + 30
    while [w for w in workers if Path(f"/proc/{w}").exists()]:
        assert time.monotonic() < deadline, "workers left running"
        time.sleep(0.1)
