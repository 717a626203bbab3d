"""``trainer.loggers``: the one trainer builder logs pretraining, fine-tuning and sweep trials to
TensorBoard and MLflow besides CSV, and the scalars read back from each tracker equal the CSV
log's (an independent reader: TensorBoard's event files, MLflow's client)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import micro_config, sweep_space
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from d3lm.cli import main
from d3lm.errors import D3lmError
from d3lm.lit import loggers
from d3lm.rundir import RunDir
from d3lm.stages.finetune import finetune, load_finetune_config
from d3lm.stages.train import train

TRACKERS = "trainer.loggers=[csv,tensorboard,mlflow]"
QUICK = ["trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.precision=32-true"]


def tensorboard_scalars(run: Path, tag: str) -> dict[int, float]:
    (events,) = {p.parent for p in (run / "tensorboard").rglob("events.out.tfevents.*")}
    acc = EventAccumulator(str(events))
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)}


def mlflow_scalars(run: Path, key: str) -> dict[int, float]:
    client = MlflowClient(f"sqlite:///{(run.parent / 'mlflow.db').resolve()}")
    experiment = client.get_experiment_by_name(run.parent.name)
    (found,) = client.search_runs([experiment.experiment_id], f"attributes.run_name = '{run.name}'")
    return {m.step: m.value for m in client.get_metric_history(found.info.run_id, key)}


def csv_scalars(run: Path, key: str) -> dict[int, float]:
    log = RunDir(run).log()
    rows = log[["step", key]].dropna()
    return {int(s): float(v) for s, v in rows.itertuples(index=False)}


def assert_same(run: Path, key: str) -> None:
    want = csv_scalars(run, key)
    assert want, f"no {key} in the CSV log"
    for got in (tensorboard_scalars(run, key), mlflow_scalars(run, key)):
        assert got.keys() == want.keys()
        assert got == pytest.approx(want, rel=1e-6)


@pytest.fixture(autouse=True)
def _no_tracking_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loggers, "TRACKING_URI", None)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def test_pretraining_and_fine_tuning_log_to_every_tracker(
    tmp_path: Path, dna_table: Path, one_thread
) -> None:
    run = train(micro_config(dna_table, tmp_path / "runs", TRACKERS, *QUICK))
    assert_same(run, "val/bpn")
    assert_same(run, "train/loss")

    cfg = load_finetune_config(
        overrides=[
            f"task={dna_table}",
            f"checkpoint={run}",
            f"runs_dir={tmp_path / 'runs'}",
            f"results_dir={tmp_path / 'results'}",
            f"cache_dir={tmp_path / 'cache'}",
            "max_steps=4",
            "val_check_interval=2",
            "batch_size=16",
            TRACKERS,
        ]
    )
    tuned = finetune(cfg)
    assert_same(tuned, "val/mcc")


def test_sweep_trials_log_to_every_tracker(
    tmp_path: Path, dna_table: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    space = sweep_space(tmp_path)
    storage = f"sqlite:///{tmp_path / 'sweep.db'}"
    places = [
        f"data.dataset={dna_table}",
        f"runs_dir={tmp_path / 'runs'}",
        f"results_dir={tmp_path / 'results'}",
        f"cache_dir={tmp_path / 'cache'}",
    ]
    argv = ["sweep", str(space), "--storage", storage, "--study", "logged", "--n-trials", "2"]
    assert main([*argv, *places, *QUICK, TRACKERS]) == 0
    trials = sorted((tmp_path / "runs" / "logged").glob("trial-*"))
    assert len(trials) == 2
    for run in trials:
        assert_same(run, "val/bpn")


def test_an_unknown_or_missing_logger_is_named(tmp_path: Path, dna_table: Path) -> None:
    with pytest.raises(D3lmError, match=r"trainer\.loggers"):
        train(micro_config(dna_table, tmp_path / "runs", "trainer.loggers=csv", *QUICK))
    with pytest.raises(D3lmError, match="neptune"):
        train(micro_config(dna_table, tmp_path / "runs", "trainer.loggers=[neptune]", *QUICK))
    assert not list((tmp_path / "runs").rglob("*.ckpt"))


def test_csv_alone_is_the_default(tmp_path: Path, dna_table: Path) -> None:
    run = Path(train(micro_config(dna_table, tmp_path / "runs", *QUICK)))
    assert not (run / "tensorboard").exists() and not (run.parent / "mlflow.db").exists()
    assert isinstance(RunDir(run).log(), pd.DataFrame)
