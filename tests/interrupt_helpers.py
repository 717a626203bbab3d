"""What the interruption tests (tests/test_interrupt_*.py) share: the pinned micro training, a
``d3lm`` command started in its own process and signalled once a file exists, the check of the one
line an interrupted command prints (exit code, no traceback, the command that continues it), the
weights and step of a run's last checkpoint, and stand-ins for SLURM's ``srun`` and ``scontrol``."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from d3lm.stages.checkpoints import read_checkpoint

ROOT = Path(__file__).parents[1]
#: Training steps of every run here; checkpoints every EVERY steps, validation every 10.
STEPS, EVERY = 40, 5
PINNED = [
    f"trainer.max_steps={STEPS}",
    f"trainer.checkpoint_every_n_steps={EVERY}",
    "trainer.precision=32-true",
]
CODE = {signal.SIGTERM: 143, signal.SIGINT: 130}


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
