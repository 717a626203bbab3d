"""Interrupted training, and sampling from the trained run: SIGTERM and SIGINT end ``d3lm train``
with exit code 143 / 130 and one line on stderr that says where it stopped and the command that
continues it, never a traceback; that command reaches the uninterrupted run's weights bit for bit,
and so does a SLURM requeue (the job's command run again). A signal during sampling stops every
sampling worker. Under them, the signal machinery of d3lm.interrupt.

The subprocess tests send real signals to real ``d3lm`` processes once a checkpoint exists;
the in-process ones send the signal from a callback at a chosen step, so the step is exact.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
from conftest import micro_config
from interrupt_helpers import (
    CODE,
    EVERY,
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
    train_args,
    wait_for,
)

from d3lm import interrupt, runlock
from d3lm.interrupt import Interrupted
from d3lm.rundir import RunDir
from d3lm.stages.train import train


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
