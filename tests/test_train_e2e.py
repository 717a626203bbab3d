"""End-to-end: micro model on a real-shaped fixture, through the same stages the CLI runs."""

import pytest
import torch

from d3lm.cli import main
from d3lm.config import load_config
from d3lm.data.fasta import read_fasta
from d3lm.rundir import RunDir
from d3lm.stages.train import train


@pytest.fixture(scope="module")
def trained(dna_table, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    cfg = load_config(
        "micro",
        overrides=[
            f"data.dataset={dna_table}",
            f"runs_dir={root}",
            "run=r0",
            "experiment=e2e",
            f"results_dir={root / 'results'}",
            "trainer.max_steps=40",
            "trainer.val_check_interval=10",
            # from a uniform head, so that the curve shows learning (the bias init has its own test)
            "model.init_output_bias=false",
            "trainer.checkpoint_every_n_steps=20",
        ],
    )
    return cfg, train(cfg)


def val_curve(run_dir):
    return RunDir(run_dir).log().dropna(subset=["val/bpn"])[["step", "val/bpn"]]


@pytest.mark.slow
def test_validation_nll_falls(trained):
    _, run_dir = trained
    curve = val_curve(run_dir)
    assert len(curve) == 4
    # The fixture's chain has ~1.89 bits/nt of entropy rate (1.98 for its base composition alone)
    # and a planted 8-mer; an ELBO under 1.88 needs the model to have learned context.
    assert curve["val/bpn"].iloc[-1] < curve["val/bpn"].iloc[0]
    assert curve["val/bpn"].iloc[-1] < 1.88
    assert (run_dir / "config.yaml").exists()


@pytest.mark.slow
def test_resume_continues_the_step_count(trained):
    _, run_dir = trained
    assert main(["train", f"resume={run_dir}", "trainer.max_steps=60"]) == 0
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 60
    steps = RunDir(run_dir).log()["step"].dropna()
    assert steps.max() >= 59 and steps.min() < 40  # the first session's log is kept


@pytest.mark.slow
def test_sample_writes_exact_length_fasta(trained, tmp_path):
    _, run_dir = trained
    out = tmp_path / "s.fa"
    trace = tmp_path / "trace.pt"
    assert (
        main(
            [
                "sample",
                str(run_dir),
                "--n",
                "5",
                "--bp",
                "47",
                "--out",
                str(out),
                "--trace",
                str(trace),
                "steps=4",
                "--sampler",
                "confidence",
            ]
        )
        == 0
    )
    records = list(read_fasta(out))
    assert len(records) == 5 and all(len(seq) == 47 for _, seq in records)
    assert set("".join(seq for _, seq in records)) <= set("ACGT")
    order = torch.load(trace)["trace"]
    # <cls> + 7 six-mers + 5 single nucleotides; <cls> is known (-1), the rest committed in 4 steps
    assert order.shape == (5, 13) and (order[:, 0] == -1).all()
    assert order[:, 1:].min() >= 0 and order[:, 1:].max() == 3


def test_a_new_run_refuses_to_overwrite_an_old_one(trained):
    cfg, _ = trained
    with pytest.raises(FileExistsError, match="resume it with resume="):
        train(cfg)
