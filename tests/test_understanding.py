"""The understanding table end to end at micro scale: a grid pretrains one model, fine-tunes it
and a random init on a planted-motif task, writes one row set per (task, init, seed), never redoes
finished work, and its notebook puts every (init, task) cell in the table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from d3lm.cli import main
from d3lm.errors import D3lmError
from d3lm.experiments.understanding import UnderstandingPlan, load_grid, run_understanding

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def planted_task(path: Path, n: int = 240, bp: int = 60) -> Path:
    """Class ``motif`` holds a fixed 12-mer at a random place in uniform DNA, class ``none`` not."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        seq = "".join(rng.choice(list("ACGT"), bp))
        if i % 2:
            at = int(rng.integers(0, bp - 12))
            seq = seq[:at] + "TGACGTCATGCA" + seq[at + 12 :]
        rows.append({"name": f"r{i}", "sequence": seq, "label": "motif" if i % 2 else "none"})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def write_grid(root: Path, corpus: Path, task: Path) -> Path:
    grid = {
        "experiment": "understanding",
        "seeds": [0, 1],
        "pretrain": {
            "config": {
                "data.dataset": str(corpus),
                "runs_dir": str(root / "runs"),
                "results_dir": str(root / "results"),
                "cache_dir": str(root / "cache"),
                "trainer.max_steps": 10,
            },
            "models": {"diffusion": {}},
        },
        "finetune": {
            "config": {
                "runs_dir": str(root / "runs"),
                "results_dir": str(root / "results"),
                "cache_dir": str(root / "cache"),
                "max_steps": 20,
                "val_check_interval": 10,
                "warmup_steps": 2,
                "batch_size": 16,
            },
            "tasks": {str(task): {}},
        },
    }
    path = root / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, dna_table: Path) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("understanding")
    grid = write_grid(root, dna_table, planted_task(root / "planted.csv"))
    assert main(["understanding", str(grid), "--scale", "micro"]) == 0
    return root, grid


@pytest.mark.slow
def test_every_init_task_and_seed_has_test_rows(made: tuple[Path, Path]) -> None:
    root, _ = made
    rows = pd.read_csv(root / "results" / "understanding-micro.csv")
    test = rows[(rows["split"] == "test") & (rows["metric"] == "mcc")]
    assert sorted(zip(test["init"], test["seed"], strict=True)) == [
        ("diffusion", 0),
        ("diffusion", 1),
        ("random", 0),
        ("random", 1),
    ]
    assert set(rows["task"]) == {"planted"}
    assert (root / "runs" / "understanding-micro-pretrain" / "diffusion" / "checkpoints").is_dir()


@pytest.mark.slow
def test_random_init_has_the_pretrained_backbone_shape(made: tuple[Path, Path]) -> None:
    root, grid = made
    plan = UnderstandingPlan(load_grid(grid), "micro")
    pre = plan.pretrain_config("diffusion")
    random_cfg = plan.finetune_config(str(root / "planted.csv"), "random", 0)
    assert random_cfg.checkpoint == "none"
    assert random_cfg.model.preset == pre.model.preset == "micro"
    assert random_cfg.tokenizer.name == pre.tokenizer.name
    tuned = plan.finetune_config(str(root / "planted.csv"), "diffusion", 0)
    assert Path(tuned.checkpoint) == root / "runs" / "understanding-micro-pretrain" / "diffusion"


@pytest.mark.slow
def test_finished_points_are_not_redone(made: tuple[Path, Path]) -> None:
    root, grid = made
    done = sorted((root / "runs" / "understanding-micro").glob("*/metrics.json"))
    assert len(done) == 4
    before = {p: p.stat().st_mtime_ns for p in done}
    ckpt = root / "runs" / "understanding-micro-pretrain" / "diffusion" / "checkpoints"
    ckpt = ckpt / "last.ckpt"
    ckpt_time = ckpt.stat().st_mtime_ns
    lines: list[str] = []
    run_understanding(UnderstandingPlan(load_grid(grid), "micro"), echo=lines.append)
    assert {p: p.stat().st_mtime_ns for p in done} == before
    assert ckpt.stat().st_mtime_ns == ckpt_time
    assert any("pretrain diffusion" in line and "done" in line for line in lines)


@pytest.mark.slow
def test_notebook_table_has_every_init_and_task(made: tuple[Path, Path]) -> None:
    root, _ = made
    env = {
        **os.environ,
        "SCALE": "micro",
        "D3LM_RESULTS": str(root / "results"),
        "D3LM_REPORTS": str(root / "reports"),
        "MPLBACKEND": "Agg",
    }
    subprocess.run(
        [sys.executable, str(ROOT / "analysis" / "understanding.py")],
        cwd=ROOT / "analysis",
        env=env,
        check=True,
        capture_output=True,
    )
    table = (root / "reports" / "micro" / "understanding.md").read_text()
    cells = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith("| ")
    ]
    assert cells[0] == ["init", "planted"]
    assert [row[0] for row in cells[1:]] == ["random", "diffusion"]
    gain = (root / "reports" / "micro" / "understanding_gain.md").read_text()
    assert "| diffusion |" in gain
    for stem in ("understanding.png", "understanding.pdf"):
        assert (root / "reports" / "micro" / stem).stat().st_size > 0


def test_grid_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "grid.yaml"
    bad.write_text(yaml.safe_dump({"finetune": {"tasks": {"no_such_task": {}}}}))
    with pytest.raises(D3lmError, match="no_such_task"):
        load_grid(bad)
    bad.write_text(yaml.safe_dump({"finetune": {"tasks": {}}}))
    with pytest.raises(D3lmError, match=f"{bad}.*no task"):
        load_grid(bad)
    bad.write_text(yaml.safe_dump({"pretrian": {}, "finetune": {"tasks": {"promoter": {}}}}))
    with pytest.raises(D3lmError, match="pretrian"):
        load_grid(bad)
    bad.write_text(
        yaml.safe_dump(
            {
                "pretrain": {"models": {"random": {}}},
                "finetune": {"tasks": {"promoter": {}}},
            }
        )
    )
    with pytest.raises(D3lmError, match="random"):
        load_grid(bad)


def test_tiny_grid_holds_out_its_task_windows_from_the_corpus() -> None:
    plan = UnderstandingPlan(load_grid(), "tiny")
    pre = plan.pretrain_config("mlm")
    assert pre.diffusion.objective.name == "mlm"
    assert pre.data.dataset == "chromosomes"
    held = {h["task"]: h["length"] for h in pre.data.params.held_out}
    assert held == {"splice_donor": 200, "splice_acceptor": 200, "promoter": 200}
    # equal compute: the pretrained models differ in the objective only
    diff = plan.pretrain_config("diffusion")
    for key in ("data", "model", "optim", "tokenizer", "trainer", "seed"):
        assert pre[key] == diff[key], key
