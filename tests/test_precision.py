"""``trainer.precision: auto``: bf16-mixed only where bf16 matmuls are native, cached, logged."""

from __future__ import annotations

import logging
import platform
from pathlib import Path

import pytest
import torch
import yaml

from d3lm import precision
from d3lm.cli import main
from d3lm.config import load_config
from d3lm.errors import D3lmError
from d3lm.stages.train import train

EMULATED = (3e-3, 0.3)  # fp32 and bf16 seconds of an AVX2 CPU: bf16 0.01x fp32
NATIVE = (4e-3, 1e-3)  # AVX-512 BF16 / AMX: bf16 4x fp32


@pytest.fixture(autouse=True)
def unforced(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests check the probe itself, so ``make test``'s forced pass must not reach them."""
    monkeypatch.delenv(precision.FORCE_ENV, raising=False)


@pytest.fixture
def timings(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Fake matmul timings, a CPU without CUDA or MPS; ``calls`` counts the dtypes timed."""
    fake: dict[str, object] = {"seconds": EMULATED, "calls": []}

    def matmul_seconds(dtype: torch.dtype, size: int = 512) -> float:
        fake["calls"].append(dtype)
        return fake["seconds"][dtype == torch.bfloat16]

    monkeypatch.setattr(precision, "matmul_seconds", matmul_seconds)
    monkeypatch.setattr(precision, "cpu_model", lambda: "Test CPU 9000")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    return fake


@pytest.mark.parametrize("value", precision.OUTCOMES)
def test_the_environment_forces_what_auto_picks_and_nothing_else(timings, monkeypatch, value):
    monkeypatch.setenv(precision.FORCE_ENV, value)
    assert precision.resolve("auto", "cpu", None) == precision.Choice(
        value, f"forced by {precision.FORCE_ENV}"
    )
    assert timings["calls"] == []  # no probe
    assert precision.resolve("32-true", "cpu", None) == precision.Choice("32-true")


def test_a_forced_value_auto_cannot_take_is_refused(monkeypatch):
    monkeypatch.setenv(precision.FORCE_ENV, "fp8")
    with pytest.raises(D3lmError, match=r"D3LM_FORCE_PRECISION='fp8': use one of bf16-mixed"):
        precision.resolve("auto", "cpu", None)


def test_auto_is_the_default():
    assert load_config().trainer.precision == "auto"
    assert load_config("paper").trainer.precision == "auto"
    assert load_config("tiny").trainer.precision == "auto"


def test_emulated_bf16_chooses_fp32(timings, tmp_path):
    choice = precision.resolve("auto", "auto", tmp_path)
    assert choice.precision == "32-true"
    assert choice.line().startswith("precision auto -> 32-true: bf16 matmul 0.01x fp32 on ")
    assert "Test CPU 9000" in choice.reason


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(NATIVE, "bf16-mixed"), ((3e-3, 2e-3), "bf16-mixed"), ((2.8e-3, 2e-3), "32-true")],
)
def test_fast_bf16_chooses_bf16_mixed(timings, tmp_path, seconds, expected):
    timings["seconds"] = seconds  # 4x, 1.5x (the threshold), 1.4x
    assert precision.resolve("auto", "cpu", tmp_path).precision == expected


def test_probe_is_cached_per_cpu_model(timings, tmp_path, monkeypatch):
    first = precision.resolve("auto", "cpu", tmp_path)
    assert len(timings["calls"]) == 2
    timings["seconds"] = NATIVE  # a new measurement would choose otherwise
    assert precision.resolve("auto", "cpu", tmp_path) == first
    assert len(timings["calls"]) == 2  # read from the cache, not probed again
    assert len(list((tmp_path / "precision").glob("*.json"))) == 1

    monkeypatch.setattr(precision, "cpu_model", lambda: "Another CPU")
    assert precision.resolve("auto", "cpu", tmp_path).precision == "bf16-mixed"
    assert len(timings["calls"]) == 4
    assert len(list((tmp_path / "precision").glob("*.json"))) == 2


def test_no_cache_dir_probes_every_time(timings):
    precision.resolve("auto", "cpu", None)
    precision.resolve("auto", "cpu", None)
    assert len(timings["calls"]) == 4


def test_unreadable_cache_is_probed_again(timings, tmp_path):
    precision.resolve("auto", "cpu", tmp_path)
    (cached,) = (tmp_path / "precision").glob("*.json")
    cached.write_text("{not json")
    assert precision.resolve("auto", "cpu", tmp_path).precision == "32-true"
    assert len(timings["calls"]) == 4
    assert '"fp32_s"' in cached.read_text()  # rewritten


@pytest.mark.parametrize("value", ["32-true", "bf16-mixed", "16-mixed", "bf16", "32", 32])
def test_explicit_values_pass_through(timings, tmp_path, value):
    assert precision.resolve(value, "cpu", tmp_path) == precision.Choice(value)
    assert timings["calls"] == []
    assert not (tmp_path / "precision").exists()


@pytest.mark.parametrize("value", ["fp8", "bf16-auto", "Auto", 8])
def test_unknown_precision_names_the_key(value):
    with pytest.raises(D3lmError, match=r"trainer\.precision=.*not a precision.*32-true"):
        precision.resolve(value, "cpu", None)


def test_cuda_asks_the_device(timings, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda: "Fake GPU")
    native = {"value": True}
    monkeypatch.setattr(
        torch.cuda, "is_bf16_supported", lambda including_emulation=True: native["value"]
    )
    assert precision.resolve("auto", "auto", tmp_path) == precision.Choice(
        "bf16-mixed", "Fake GPU multiplies bf16 natively"
    )
    native["value"] = False
    assert precision.resolve("auto", "gpu", tmp_path).precision == "32-true"
    # a CPU run on a GPU machine times the CPU
    assert precision.resolve("auto", "cpu", tmp_path).precision == "32-true"
    assert len(timings["calls"]) == 2


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64")
    or not precision._cpuinfo().get("flags")
    or bool(precision.bf16_flags()),
    reason="needs an x86 CPU that reports its flags and has no native bf16",
)
def test_real_probe_chooses_fp32_without_native_bf16(tmp_path):
    probe = precision.cpu_probe(None)
    assert probe.speedup < precision.MIN_SPEEDUP
    assert precision.resolve("auto", "cpu", None).precision == "32-true"


def test_cli_prints_the_probe(timings, tmp_path, capsys):
    assert main(["precision", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "fp32 3.00 ms, bf16 300.00 ms" in out
    assert "cpu: precision auto -> 32-true: bf16 matmul 0.01x fp32 on Test CPU 9000" in out
    assert main(["precision", "--no-cache", "--cache-dir", str(tmp_path / "none")]) == 0
    assert len(timings["calls"]) == 4
    assert not (tmp_path / "none").exists()


def _micro(dna_table: Path, root: Path, *overrides: str):
    return load_config(
        "micro",
        overrides=[
            f"data.dataset={dna_table}",
            f"runs_dir={root / 'runs'}",
            f"results_dir={root / 'results'}",
            f"cache_dir={root / 'cache'}",
            "experiment=prec",
            "run=r0",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "trainer.checkpoint_every_n_steps=2",
            "trainer.limit_val_batches=1",
            *overrides,
        ],
    )


@pytest.mark.usefixtures("one_thread")
def test_training_logs_and_records_the_choice(timings, dna_table, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("lightning.pytorch"), "propagate", True)
    with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
        run_dir = train(_micro(dna_table, tmp_path))
    line = "precision auto -> 32-true: bf16 matmul 0.01x fp32 on Test CPU 9000"
    assert any(r.getMessage().startswith(line) for r in caplog.records)
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["trainer"]["precision"] == "32-true"  # what auto chose: a resume keeps it
    hparams = yaml.safe_load((run_dir / "logs/version_0/hparams.yaml").read_text())
    assert hparams["precision"] == "32-true"
    assert hparams["precision_reason"].startswith("bf16 matmul 0.01x fp32 on Test CPU 9000")

    # An ablation resumes with its grid's `auto`: on a machine (or cache) that would now choose
    # bf16, the run keeps the precision it started with.
    timings["seconds"] = NATIVE
    train(_micro(dna_table, tmp_path, f"resume={run_dir}", "trainer.max_steps=4"))
    hparams = yaml.safe_load((run_dir / "logs/version_1/hparams.yaml").read_text())
    assert hparams["precision"] == "32-true"
    assert hparams["precision_reason"] == f"kept from {run_dir / 'config.yaml'}"
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]["precision"] == (
        "32-true"
    )


def test_training_refuses_an_unknown_precision(dna_table, tmp_path):
    with pytest.raises(D3lmError, match=r"trainer\.precision='fp8'"):
        train(_micro(dna_table, tmp_path, "trainer.precision=fp8"))
    assert not (tmp_path / "runs").exists()
