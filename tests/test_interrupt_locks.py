"""One run folder takes one writer at a time (d3lm.runlock): a folder held by another process is
refused naming that process, a lock left by a killed process does not block, and of two trainings
started into one folder one is refused by name and the other completes, nothing interleaved."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from interrupt_helpers import d3lm, start, train_args

from d3lm import runlock
from d3lm.rundir import RunDir
from d3lm.runlock import RunBusy

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


# ------------------------------------------------------------------ two trainings, one folder


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
