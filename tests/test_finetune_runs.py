"""Fine-tuning runs: checkpoints (diffusion runs, imported NT v2 runs) hand over their encoder
exactly and freezing keeps exactly the frozen parameters, bad input is refused by name before any
work, predictions are probabilities, and runs are skipped or resumed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from finetune_helpers import MOTIFS, RANDOM_INIT, config, planted
from omegaconf import OmegaConf

from d3lm.cli import main
from d3lm.config import load_config
from d3lm.errors import D3lmError
from d3lm.interop.nt_v2 import export_nt, import_nt, write_run
from d3lm.stages.checkpoints import read_checkpoint
from d3lm.stages.classifier import new_model
from d3lm.stages.finetune import finetune
from d3lm.stages.predict import predict
from d3lm.stages.train import train
from d3lm.tasks import load_task

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def binary_task(tmp_path_factory) -> Path:
    return planted(tmp_path_factory.mktemp("task") / "binary.csv", 240, (None, MOTIFS[0]))


@pytest.fixture(scope="module")
def diffusion_run(tmp_path_factory, dna_table) -> Path:
    """A micro diffusion run (nt6mer), trained for 2 steps by the runner."""
    root = tmp_path_factory.mktemp("pretrain")
    cfg = load_config(
        "micro",
        overrides=[
            f"data.dataset={dna_table}",
            f"runs_dir={root}",
            f"cache_dir={root / 'cache'}",
            f"results_dir={root / 'results'}",
            "experiment=pre",
            "run=diffusion",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
        ],
    )
    return train(cfg)


@pytest.fixture(scope="module")
def nt_run(tmp_path_factory, diffusion_run) -> Path:
    """An ``import-nt`` run: the diffusion run exported as an NT v2 folder and imported back
    (weights, no optimiser state)."""
    root = tmp_path_factory.mktemp("nt")
    saved = read_checkpoint(diffusion_run / "checkpoints" / "last.ckpt")
    folder = export_nt(saved, root / "hf")
    return write_run(import_nt(folder), root / "imported")


def encoder_weights(path: Path) -> dict[str, torch.Tensor]:
    state = read_checkpoint(path, hparams=())["state_dict"]
    return {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}


# -- initialisation -------------------------------------------------------------------------------


def test_init_from_a_diffusion_run_copies_the_encoder_exactly(
    tmp_path: Path, binary_task: Path, diffusion_run: Path
) -> None:
    cfg = config(tmp_path, binary_task, f"checkpoint={diffusion_run}")
    model = new_model(cfg, load_task(str(binary_task), tmp_path))
    pretrained = encoder_weights(diffusion_run / "checkpoints" / "last.ckpt")
    ours = model.encoder.state_dict()
    assert set(ours) == set(pretrained)
    for name, tensor in pretrained.items():
        assert torch.equal(ours[name], tensor), name
    assert not any(name.startswith("head.") and "decoder" in name for name in model.state_dict())
    assert model.hparams.tokenizer["name"] == "nt6mer"  # the checkpoint's


@pytest.mark.parametrize("freeze", [1, "all"])
def test_freeze_keeps_exactly_the_frozen_parameters(
    tmp_path: Path, binary_task: Path, diffusion_run: Path, freeze
) -> None:
    run = finetune(config(tmp_path, binary_task, f"checkpoint={diffusion_run}", f"freeze={freeze}"))
    before = encoder_weights(diffusion_run / "checkpoints" / "last.ckpt")
    after = encoder_weights(run / "checkpoints" / "last.ckpt")
    frozen = {n for n in before if freeze == "all" or n.startswith(("embeddings.", "layers.0."))}
    assert 0 < len(frozen) < len(before) if freeze == 1 else frozen == set(before)
    for name in before:
        same = torch.equal(before[name], after[name])
        assert same == (name in frozen), name


def test_an_import_nt_run_loads_and_fine_tunes(
    tmp_path: Path, binary_task: Path, nt_run: Path
) -> None:
    assert "optimizer_states" not in torch.load(
        nt_run / "checkpoints" / "last.ckpt", weights_only=True
    )
    cfg = config(tmp_path, binary_task, f"checkpoint={nt_run}", "max_steps=10")
    model = new_model(cfg, load_task(str(binary_task), tmp_path))
    for name, tensor in encoder_weights(nt_run / "checkpoints" / "last.ckpt").items():
        assert torch.equal(model.encoder.state_dict()[name], tensor), name
    run = finetune(cfg)
    assert json.loads((run / "metrics.json").read_text())["init"] == "imported"


# -- errors ---------------------------------------------------------------------------------------


def test_a_record_too_long_for_the_backbone_is_named(tmp_path: Path, binary_task: Path) -> None:
    cfg = config(tmp_path, binary_task, *RANDOM_INIT, "model.params.max_len=20")
    with pytest.raises(D3lmError, match=r"record 'r0': 60 bp make 21 tokens .*max_len 20"):
        finetune(cfg)
    assert not (tmp_path / "runs").exists()


def test_a_tokenizer_other_than_the_checkpoints_is_refused(
    tmp_path: Path, binary_task: Path, diffusion_run: Path
) -> None:
    cfg = config(
        tmp_path,
        binary_task,
        f"checkpoint={diffusion_run}",
        "tokenizer.name=kmer",
        "tokenizer.params.k=3",
    )
    last = diffusion_run / "checkpoints" / "last.ckpt"
    with pytest.raises(D3lmError, match=rf"{last}: .*nt6mer\(\).*kmer\(k=3\)"):
        finetune(cfg)
    same = config(tmp_path, binary_task, f"checkpoint={diffusion_run}", "tokenizer.name=nt6mer")
    assert new_model(same, load_task(str(binary_task), tmp_path)).hparams.tokenizer["name"] == (
        "nt6mer"
    )
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("pooling=max", r"unknown pooling 'max'; known pooling plugins: cls, mean"),
        ("head.name=deep", r"unknown classifier_head 'deep'"),
        ("class_weights=inverse", r"class_weights='inverse': expected one of none, balanced"),
        ("freeze=9", r"freeze=9: expected none, all or a number of blocks in 0..2"),
        ("lr_head=0", r"lr_head=0: must be > 0"),
    ],
)
def test_bad_settings_are_refused_before_any_work(
    tmp_path: Path, binary_task: Path, override: str, message: str
) -> None:
    with pytest.raises(D3lmError, match=message):
        finetune(config(tmp_path, binary_task, *RANDOM_INIT, override))
    assert not (tmp_path / "runs").exists()


def test_unknown_keys_and_model_with_a_checkpoint_are_errors(
    tmp_path: Path, binary_task: Path, diffusion_run: Path, capsys
) -> None:
    assert main(["finetune", f"task={binary_task}", "poolin=cls"]) == 2
    assert "poolin" in capsys.readouterr().err
    cfg = config(tmp_path, binary_task, f"checkpoint={diffusion_run}", "model.preset=micro")
    with pytest.raises(D3lmError, match=re.escape("model.* applies to checkpoint=none only")):
        finetune(cfg)


# -- predict, skip, resume ------------------------------------------------------------------------


def test_cli_finetune_then_predict_writes_probabilities(
    tmp_path: Path, binary_task: Path, capsys
) -> None:
    args = [f"{o}" for o in RANDOM_INIT]
    root = [f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'r'}"]
    quick = ["max_steps=10", "val_check_interval=5", "batch_size=16", f"cache_dir={tmp_path}"]
    assert main(["finetune", f"task={binary_task}", *args, *root, *quick]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]  # task, init, test scores, run
    assert summary.startswith("binary (init random): test mcc ")
    run = Path(summary.rsplit("; run ", 1)[1])
    assert run == tmp_path / "runs" / "finetune" / "binary-random-seed0"
    data = tmp_path / "new.fasta"
    data.write_text(">one\nACGTACGTACGTTGACGTCATGCA\n>two\nGGGGCCCCAAAA\n>three\nA\n")
    out = tmp_path / "out" / "p.csv"
    assert main(["predict", str(run), "--data", str(data), "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == ["name", "p_c0", "p_c1", "predicted"]
    assert list(table["name"]) == ["one", "two", "three"]
    np.testing.assert_allclose(table[["p_c0", "p_c1"]].sum(axis=1), 1.0, atol=1e-6)
    best = np.where(table["p_c1"] > table["p_c0"], "c1", "c0")
    assert list(table["predicted"]) == list(best)
    assert predict(run, data, tmp_path / "again.csv").read_text() == out.read_text()
    assert main(["predict", str(run), "--data", str(tmp_path / "nope.fa"), "--out", str(out)]) == 2


def test_a_finished_run_is_skipped(tmp_path: Path, binary_task: Path) -> None:
    cfg = config(tmp_path, binary_task, *RANDOM_INIT, "max_steps=10")
    run = finetune(cfg)
    stamp = (run / "metrics.json").stat().st_mtime_ns
    (tmp_path / "results" / "finetune.csv").unlink()
    assert finetune(cfg) == run
    assert (run / "metrics.json").stat().st_mtime_ns == stamp
    assert [p.name for p in (run / "logs").iterdir()] == ["version_0"]
    assert len(pd.read_csv(tmp_path / "results" / "finetune.csv")) == 6  # rows written again
    other = config(tmp_path, binary_task, *RANDOM_INIT, "max_steps=10", "lr_head=1e-2")
    with pytest.raises(D3lmError, match=r"holds a run with other settings \(lr_head"):
        finetune(other)


def test_precision_auto_is_recorded_as_its_choice_and_reruns_skip(
    tmp_path: Path, binary_task: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def emulated(dtype: torch.dtype, *args: object, **kwargs: object) -> float:
        return 0.5 if dtype == torch.bfloat16 else 0.01  # bf16 50x slower than fp32

    monkeypatch.setattr("d3lm.precision.matmul_seconds", emulated)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = config(tmp_path, binary_task, *RANDOM_INIT, "max_steps=10", "trainer.precision=auto")
    run = finetune(cfg)
    assert OmegaConf.load(run / "config.yaml").trainer.precision == "32-true"
    stamp = (run / "metrics.json").stat().st_mtime_ns
    assert finetune(cfg) == run
    assert (run / "metrics.json").stat().st_mtime_ns == stamp


def test_max_epochs_sets_the_number_of_steps(tmp_path: Path, binary_task: Path) -> None:
    run = finetune(config(tmp_path, binary_task, *RANDOM_INIT, "max_epochs=2", "patience=50"))
    train = (load_task(str(binary_task), tmp_path).frame["split"] == "train").sum()
    assert json.loads((run / "metrics.json").read_text())["steps"] == 2 * (train // 16)


class Interrupt(L.Callback):
    """Stops training with an error after ``step`` steps, as a killed job would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


def test_an_interrupted_run_resumes_to_the_uninterrupted_weights(
    tmp_path: Path, binary_task: Path
) -> None:
    whole = finetune(config(tmp_path / "a", binary_task, *RANDOM_INIT, "max_steps=30"))
    cfg = config(tmp_path / "b", binary_task, *RANDOM_INIT, "max_steps=30")
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        finetune(cfg, callbacks=[Interrupt(15)])
    run = cfg.runs_dir + "/finetune/binary-random-seed0"
    assert not Path(run, "metrics.json").exists()
    assert read_checkpoint(Path(run, "checkpoints/last.ckpt"), hparams=())["global_step"] == 10
    resumed = finetune(cfg)
    assert sorted(p.name for p in (resumed / "logs").iterdir()) == ["version_0", "version_1"]
    a = read_checkpoint(whole / "checkpoints/last.ckpt", hparams=())
    b = read_checkpoint(resumed / "checkpoints/last.ckpt", hparams=())
    assert a["global_step"] == b["global_step"] == 30
    for name, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][name]), name
    metrics = [json.loads((r / "metrics.json").read_text()) for r in (whole, resumed)]
    assert metrics[0]["test"] == metrics[1]["test"]
