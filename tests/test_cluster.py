"""The README's "Running on a cluster" commands: the SLURM script's dry run prints what the README
shows, and every ``d3lm train`` command there is a valid DDP config."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from d3lm.config import load_config
from d3lm.stages.ranges import check_ranges

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "cluster" / "train.sbatch"


def section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("## Running on a cluster", 1)[1].split("\n## ", 1)[0]


def dry_run(args: list[str], **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    out = subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={**clean, "DRY_RUN": "1", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def train_config(words: list[str]):
    """The config that ``d3lm train WORDS`` would train."""
    scale = words[words.index("--scale") + 1] if "--scale" in words else None
    overrides = [w for w in words if "=" in w]
    return load_config(scale, overrides=overrides)


def test_the_readme_dry_run_prints_what_the_readme_shows():
    lines = re.findall(r"^\$ (DRY_RUN=1 .*)\n(.*)$", section(), flags=re.MULTILINE)
    assert lines, "no dry run in the README section"
    for command, shown in lines:
        words = shlex.split(command)
        env = dict(w.split("=", 1) for w in words[: words.index("bash")])
        env.pop("DRY_RUN")
        assert dry_run(words[words.index("bash") + 2 :], **env) == shown


def test_every_readme_training_command_is_a_valid_ddp_config():
    commands = re.findall(r"^(?:\$ )?(?:d3lm|srun .*?d3lm) train (.*)$", section(), re.MULTILINE)
    assert len(commands) >= 2
    for command in commands:
        cfg = train_config(shlex.split(command))
        check_ranges(cfg)
        assert cfg.trainer.strategy == "ddp"
        processes = cfg.trainer.devices * cfg.trainer.num_nodes
        assert processes > 1 and cfg.data.batch_size % processes == 0, command
        assert cfg.run  # every process writes to the same folder


def test_the_job_takes_its_node_count_and_name_from_slurm():
    out = dry_run(["--scale", "tiny"], SLURM_JOB_NUM_NODES="3", SLURM_JOB_ID="77")
    assert out.startswith("srun --kill-on-bad-exit=1 .venv/bin/d3lm train ")
    cfg = train_config(shlex.split(out.split(" train ", 1)[1]))
    assert (cfg.trainer.num_nodes, cfg.trainer.devices, cfg.run) == (3, 8, "slurm-77")
    resumed = dry_run(["resume=runs/x/y"], SLURM_JOB_ID="77", GPUS_PER_NODE="4")
    assert "run=" not in resumed and "trainer.devices=4" in resumed


@pytest.mark.parametrize("directive", ["--ntasks-per-node=8", "--gres=gpu:8"])
def test_the_job_asks_one_task_per_gpu(directive):
    """The script's default GPUS_PER_NODE (8) matches its task and GPU requests."""
    header = [line for line in SCRIPT.read_text().splitlines() if line.startswith("#SBATCH")]
    assert f"#SBATCH {directive}" in header
    assert "per_node=${GPUS_PER_NODE:-8}" in SCRIPT.read_text()
