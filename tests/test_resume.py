"""A run can stop at any moment and continue exactly; what cannot train is refused up front.

Exact resume (SIGKILL mid-epoch, then resume, against an uninterrupted run), checkpoints checked
as they are read, no half-written run folder or config, non-finite losses, range and size checks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from d3lm.config import load_config
from d3lm.errors import D3lmError
from d3lm.lit.diffusion_lm import DiffusionLM, NonFinite
from d3lm.rundir import RunDir
from d3lm.stages.checkpoints import load_model, read_checkpoint
from d3lm.stages.train import train

pytestmark = pytest.mark.usefixtures("one_thread")

#: Training steps of the exact-resume test; the fixture's 384 training sequences in batches of
#: 16 make 24 steps per epoch, so checkpoints every 5 steps are all mid-epoch and the resumed
#: session crosses an epoch boundary.
STEPS, EVERY = 26, 5


def micro(dna_table: Path, root: Path, *overrides: str) -> list[str]:
    return [
        f"data.dataset={dna_table}",
        f"runs_dir={root}",
        f"cache_dir={root / 'cache'}",
        f"results_dir={root / 'results'}",
        "experiment=resume",
        *overrides,
    ]


def start_training(args: list[str]) -> subprocess.Popen[str]:
    """``d3lm train --scale micro ARGS`` in a fresh single-threaded process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "d3lm.cli", "train", "--scale", "micro", *args]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return out + err


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["state_dict"]


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_to_the_weights_of_an_uninterrupted_run(dna_table, tmp_path):
    """Bitwise on CPU: the same seed, one thread, the same kernels; the data order, the noise
    of each step, the optimiser, scheduler and RNG states all come back from the checkpoint."""
    steps = [f"trainer.max_steps={STEPS}", f"trainer.checkpoint_every_n_steps={EVERY}"]
    whole = start_training(micro(dna_table, tmp_path, "run=whole", *steps))
    killed = start_training(micro(dna_table, tmp_path, "run=killed", *steps))
    ckpt = tmp_path / "resume" / "killed" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not ckpt.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    _, err = killed.communicate()
    assert ckpt.exists(), err[-3000:]
    step = read_checkpoint(ckpt)["global_step"]
    assert 0 < step < STEPS and step % 24, f"killed at step {step}: not mid-epoch, mid-run"

    resumed = finish(start_training([f"resume={ckpt.parents[1]}"]))
    finish(whole)
    assert "not resumable" not in resumed  # Lightning's warning for a loader without state
    a, b = weights(tmp_path / "resume" / "whole"), weights(ckpt.parents[1])
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} tensors differ, first {differ[0]}"
    log = RunDir(ckpt.parents[1]).log().dropna(subset=["train/loss"])
    assert log["step"].max() == STEPS - 1


# ------------------------------------------------------------------ a small trained run


@pytest.fixture(scope="module")
def trained(dna_table, tmp_path_factory):
    """A micro run of 4 steps (checkpoint every 2)."""
    root = tmp_path_factory.mktemp("runs")
    cfg = load_config(
        "micro",
        overrides=micro(
            dna_table,
            root,
            "run=r0",
            "trainer.max_steps=4",
            "trainer.checkpoint_every_n_steps=2",
            "trainer.val_check_interval=2",
        ),
    )
    return cfg, train(cfg)


def resume_cfg(run_dir: Path, *overrides: str):
    cfg = load_config(files=[run_dir / "config.yaml"], overrides=list(overrides))
    cfg.resume = str(run_dir)
    return cfg


def copy_run(run_dir: Path, to: Path) -> Path:
    to.mkdir(parents=True)
    (to / "checkpoints").mkdir()
    (to / "config.yaml").write_bytes((run_dir / "config.yaml").read_bytes())
    last = run_dir / "checkpoints" / "last.ckpt"
    (to / "checkpoints" / "last.ckpt").write_bytes(last.read_bytes())
    return to


def bad_checkpoints(good: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (file content, what the message must say)."""
    data = good.read_bytes()
    return {
        "empty": (b"", "empty file"),
        "truncated": (data[: len(data) // 2], "truncated"),
        "random": (os.urandom(4096), "not a checkpoint"),
        "text": (b"model: tiny\n", "not a checkpoint"),
    }


@pytest.mark.parametrize("kind", ["empty", "truncated", "random", "text"])
def test_a_broken_checkpoint_is_an_error_naming_the_file(trained, tmp_path, kind):
    _, run_dir = trained
    content, reason = bad_checkpoints(run_dir / "checkpoints" / "last.ckpt")[kind]
    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    with pytest.raises(D3lmError, match=reason) as err:
        load_model(run_dir, path)
    assert str(path) in str(err.value) and "weights_only" not in str(err.value)


class Foreign:
    """Not something a d3lm checkpoint holds."""


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ({"obj": Foreign()}, "objects other than tensors"),
        ({"weights": torch.zeros(2)}, "no state_dict, hyper_parameters, global_step"),
        ([1, 2, 3], "not a d3lm checkpoint"),
    ],
)
def test_a_foreign_torch_file_is_not_a_checkpoint(trained, tmp_path, content, reason):
    _, run_dir = trained
    path = tmp_path / "foreign.ckpt"
    torch.save(content, path)
    with pytest.raises(D3lmError, match=reason) as err:
        load_model(run_dir, path)
    assert str(path) in str(err.value) and "weights_only" not in str(err.value)


def test_a_checkpoint_without_trainer_state_samples_but_does_not_resume(trained, tmp_path):
    _, run_dir = trained
    saved = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    lean = copy_run(run_dir, tmp_path / "lean")
    torch.save(
        {k: v for k, v in saved.items() if k != "optimizer_states"},
        lean / "checkpoints" / "last.ckpt",
    )
    assert load_model(lean).hparams.max_steps == 4
    before = (lean / "config.yaml").read_text()
    with pytest.raises(
        D3lmError, match="not a checkpoint to resume training from: no optimizer_states"
    ):
        train(resume_cfg(lean, "trainer.max_steps=6"))
    assert (lean / "config.yaml").read_text() == before


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("trainer.max_steps=3", "trained 4 steps already"),
        ("model.params.ffn=96 trainer.max_steps=6", "weights do not fit the model this config"),
    ],
)
def test_a_failed_resume_leaves_the_run_as_it_was(trained, tmp_path, override, match):
    _, run_dir = trained
    copy = copy_run(run_dir, tmp_path / "copy")
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    with pytest.raises(D3lmError, match=match):
        train(resume_cfg(copy, *override.split()))
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before


def test_a_resume_from_a_truncated_checkpoint_keeps_the_config(trained, tmp_path):
    _, run_dir = trained
    copy = copy_run(run_dir, tmp_path / "copy")
    last = copy / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    before = (copy / "config.yaml").read_text()
    with pytest.raises(D3lmError, match=f"{last}: not a checkpoint, or truncated"):
        train(resume_cfg(copy, "trainer.max_steps=600"))
    assert (copy / "config.yaml").read_text() == before


def test_a_new_run_in_a_folder_with_a_checkpoint_is_refused(trained):
    cfg, _ = trained
    with pytest.raises(FileExistsError, match="resume it with resume="):
        train(cfg)


# ------------------------------------------------------------------ non-finite losses


def nan_from(step: int):
    """A ``DiffusionLM._loss`` whose training loss is NaN from global step ``step`` on."""
    real = DiffusionLM._loss

    def loss(self, ids, generator=None):
        value, bpn, nucleotides = real(self, ids, generator)
        if self.training and self.global_step >= step:
            value = value * float("nan")
        return value, bpn, nucleotides

    return loss


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint(
    dna_table, tmp_path, monkeypatch
):
    monkeypatch.setattr(DiffusionLM, "_loss", nan_from(5))
    cfg = load_config(
        "micro",
        overrides=micro(dna_table, tmp_path, "run=nan", "trainer.checkpoint_every_n_steps=2"),
    )
    last = tmp_path / "resume" / "nan" / "checkpoints" / "last.ckpt"
    with pytest.raises(D3lmError, match=r"training loss nan .* at step 6; stopped") as err:
        train(cfg)
    assert f"the last checkpoint is kept ({last}, step 4)" in str(err.value)
    saved = read_checkpoint(last)
    assert saved["global_step"] == 4
    assert all(t.isfinite().all() for t in saved["state_dict"].values())


def test_a_new_run_that_fails_before_its_first_checkpoint_leaves_no_folder(
    dna_table, tmp_path, monkeypatch
):
    monkeypatch.setattr(DiffusionLM, "_loss", nan_from(1))
    cfg = load_config("micro", overrides=micro(dna_table, tmp_path, "run=early"))
    with pytest.raises(D3lmError, match=r"at step 2; .* no checkpoint had been written"):
        train(cfg)
    assert not (tmp_path / "resume" / "early").exists()


def test_non_finite_weights_are_never_saved(trained):
    _, run_dir = trained
    model = load_model(run_dir)
    with torch.no_grad():
        model.head.bias[0] = float("inf")
    with pytest.raises(NonFinite, match="weights are not finite"):
        model.on_save_checkpoint({})


# ------------------------------------------------------------------ checked before starting


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_steps=0", "trainer.max_steps=0: must be >= 1"),
        ("optim.lr=0", "optim.lr=0: must be > 0"),
        ("optim.lr=-1e-3", "optim.lr=-0.001: must be > 0"),
        ("data.batch_size=0", "data.batch_size=0: must be >= 1"),
        ("optim.min_lr_ratio=2", "optim.min_lr_ratio=2: must be in"),
        ("seed=-1", r"seed=-1: must be an integer in \[0, 2\*\*32\)"),
        ("data.batch_size=400", "384 training sequences, fewer than one batch"),
    ],
)
def test_what_cannot_train_is_refused_before_any_folder_is_made(
    dna_table, tmp_path, override, message
):
    cfg = load_config("micro", overrides=micro(dna_table, tmp_path, "run=bad", override))
    with pytest.raises(D3lmError, match=message):
        train(cfg)
    assert not (tmp_path / "resume").exists()


def test_data_without_a_validation_split_is_refused_naming_the_file(tmp_path):
    seqs = ["ACGT" * 15] * 20
    frame = pd.DataFrame({"name": [f"s{i}" for i in range(20)], "sequence": seqs})
    frame["split"] = ["train"] * 18 + ["test"] * 2
    path = tmp_path / "novalid.parquet"
    frame.to_parquet(path)
    cfg = load_config("micro", overrides=micro(path, tmp_path, "run=x"))
    with pytest.raises(D3lmError, match=rf"{path}: no validation sequences .*train 18, valid 0"):
        train(cfg)
