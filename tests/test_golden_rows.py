"""Behaviour pinned across refactors: a micro ablation grid, a micro fine-tune and a micro sweep,
run through the `d3lm` command, write the same result rows as the committed golden files.

The golden files were written by this test (``D3LM_WRITE_GOLDEN=1``) before the restructure of the
top layers; any later change to the rows' values is a behaviour change and must be deliberate
(rewrite them and say why in the commit). Rows are compared on values, never on revisions, paths
or timings. Everything runs in fp32 on one thread, so the rows do not depend on this CPU's bf16
support; the tolerance absorbs the last bits that differ between CPU kernels.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from d3lm.cli import main

GOLDEN = Path(__file__).parent / "data" / "golden"
WRITE = os.environ.get("D3LM_WRITE_GOLDEN") == "1"
VOLATILE = {"git", "revision", "run_dir", "checkpoint", "path"}
SECONDS = ("seconds", "cpu_", "time", "throughput", "per_s", "_s/", "sample_s_")

GRID = {
    "experiment": "golden",
    "seeds": 1,
    "config": {"evaluate": {"features": ["kmer"], "motifs": False}},
    "by_scale": {"micro": {"sample.n": 12}},
    "train": {
        "tokenizer": {
            "key": "tokenizer.name",
            "values": [
                "nt6mer",
                {"label": "kmer3", "set": {"tokenizer.name": "kmer", "tokenizer.params.k": 3}},
            ],
        }
    },
    "sample": {"sampler": {"key": "sample.sampler.name", "values": ["random", "confidence"]}},
}
SPACE = {
    "scale": "micro",
    "objective": {"metric": "val/bpn", "direction": "minimize"},
    "sampler": {"name": "tpe", "seed": 0, "n_startup_trials": 2},
    "pruner": "none",
    "params": {"optim.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True}},
}


@pytest.fixture
def places(tmp_path: Path, dna_table: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("D3LM_FORCE_PRECISION", "32-true")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.chdir(tmp_path)
    return [
        f"data.dataset={dna_table}",
        f"runs_dir={tmp_path / 'runs'}",
        f"results_dir={tmp_path / 'results'}",
        f"cache_dir={tmp_path / 'cache'}",
        "trainer.precision=32-true",
    ]


def stable(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows without what legitimately changes between runs: revisions, paths and timings."""
    keep = [c for c in frame.columns if c not in VOLATILE and not any(s in c for s in SECONDS)]
    frame = frame[keep]
    if "metric" in frame.columns:
        frame = frame[~frame["metric"].astype(str).str.contains("|".join(SECONDS), regex=True)]
    return frame.sort_values(list(frame.columns[:4])).reset_index(drop=True)


def check(name: str, frame: pd.DataFrame) -> None:
    path = GOLDEN / f"{name}.csv"
    frame = stable(frame)
    if WRITE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
        return
    want = pd.read_csv(path, keep_default_na=False, na_values=[""])
    got = pd.read_csv(
        pd.io.common.StringIO(frame.to_csv(index=False)), keep_default_na=False, na_values=[""]
    )
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_micro_grid_finetune_and_sweep_rows_are_unchanged(
    tmp_path: Path, places: list[str], dna_table: Path
) -> None:
    grid = tmp_path / "golden.yaml"
    grid.write_text(yaml.safe_dump(GRID, sort_keys=False))
    quick = ["trainer.max_steps=6", "trainer.val_check_interval=3"]
    assert main(["ablation", str(grid), "--scale", "micro", *places, *quick]) == 0
    check("ablation", pd.read_csv(tmp_path / "results" / "golden-micro.csv"))

    checkpoint = tmp_path / "runs" / "golden-micro" / "tokenizer-nt6mer-s0"  # a run folder
    tune = [
        f"task={dna_table}",
        f"checkpoint={checkpoint}",
        f"runs_dir={tmp_path / 'runs'}",
        f"results_dir={tmp_path / 'results'}",
        "max_steps=6",
        "val_check_interval=3",
        "batch_size=16",
        "trainer.precision=32-true",
    ]
    assert main(["finetune", *tune]) == 0
    (rows,) = (tmp_path / "results").glob("finetune*.csv")
    check("finetune", pd.read_csv(rows))

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE, sort_keys=False))
    storage = f"sqlite:///{tmp_path / 'sweep.db'}"
    sweep = ["sweep", str(space), "--storage", storage, "--study", "golden", "--n-trials", "2"]
    assert main([*sweep, *places, *quick]) == 0
    study = optuna.load_study(study_name="golden", storage=storage)
    trials = pd.DataFrame(
        {
            "number": t.number,
            "state": t.state.name,
            "params": json.dumps(t.params, sort_keys=True),
            "value": t.value,
        }
        for t in study.trials
    )
    check("sweep", trials)
