"""DDP: N processes split the global batch of a one-process run and log what it would."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from d3lm.config import load_config
from d3lm.data.datamodule import GlobalBatchSampler, ValidationBatches
from d3lm.data.fasta import read_fasta
from d3lm.errors import D3lmError
from d3lm.lit.diffusion_lm import noise_seed
from d3lm.rundir import RunDir
from d3lm.stages.checkpoints import load_model
from d3lm.stages.sample import sample
from d3lm.stages.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


def batches(sampler: GlobalBatchSampler, size: int) -> list[list[int]]:
    order = list(sampler)
    return [order[i : i + size] for i in range(0, len(order), size)]


def test_processes_split_the_one_process_batches():
    one = GlobalBatchSampler(103, 8, seed=3)
    two = [GlobalBatchSampler(103, 8, seed=3, rank=r, world=2) for r in range(2)]
    for epoch in range(3):
        for s in (one, *two):
            s.set_epoch(epoch)
        halves = [batches(s, 4) for s in two]
        assert batches(one, 8) == [a + b for a, b in zip(*halves, strict=True)]
        assert len(batches(one, 8)) == len(one) // 8 == 103 // 8
    one.set_epoch(0)
    first = batches(one, 8)
    one.set_epoch(1)
    assert batches(one, 8) != first  # each epoch its own order


def test_a_sampler_started_at_a_step_continues_the_sequence():
    whole = GlobalBatchSampler(50, 5, seed=0)
    stream = []
    for epoch in range(3):
        whole.set_epoch(epoch)
        stream += batches(whole, 5)
    resumed = GlobalBatchSampler(50, 5, seed=0)
    resumed.start(13)  # epoch 1, batch 3
    resumed.set_epoch(1)  # Lightning's call at the epoch's start changes nothing
    tail = batches(resumed, 5)
    resumed.set_epoch(2)
    assert tail + batches(resumed, 5) == stream[13:]


def test_processes_share_out_the_one_process_validation_set():
    one = list(ValidationBatches(50, 8, limit=5))
    assert one == [list(range(b * 8, b * 8 + 8)) for b in range(5)]
    assert list(ValidationBatches(50, 8))[-1] == [48, 49]
    parts = [list(ValidationBatches(50, 8, limit=5, rank=r, world=3)) for r in range(3)]
    assert all(len(batch) <= 3 for part in parts for batch in part)  # 8 / 3, rounded up
    assert [i for part in parts for batch in part for i in batch] == list(range(40))


def test_each_step_and_process_draws_its_own_noise():
    seeds = {noise_seed(0, rank, step) for rank in range(4) for step in range(100)}
    assert len(seeds) == 400
    assert noise_seed(5, 1, 7) == noise_seed(5, 1, 7)


def micro(dna_table, root, *overrides: str) -> list[str]:
    return [
        f"data.dataset={dna_table}",
        f"runs_dir={root}",
        f"cache_dir={root / 'cache'}",
        "experiment=ddp",
        "trainer.accelerator=cpu",
        *overrides,
    ]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["run=x", "data.batch_size=15"], "batch_size=15 .the global batch. does not divide"),
        (["run=x", "trainer.limit_val_batches=1", "data.eval_batch_size=1"], "1 validation"),
        ([], "2 processes need run=NAME"),
    ],
)
def test_a_ddp_run_that_cannot_split_is_refused_before_it_starts(
    dna_table, tmp_path, overrides, message
):
    two = ["trainer.devices=2", "trainer.strategy=ddp"]
    cfg = load_config("micro", overrides=micro(dna_table, tmp_path, *two, *overrides))
    with pytest.raises(D3lmError, match=message):
        train(cfg)
    assert not (tmp_path / "ddp").exists()


def curve(run_dir, metric: str) -> pd.Series:
    log = RunDir(run_dir).log().dropna(subset=[metric])
    return log.set_index("step")[metric]


@pytest.mark.slow
def test_two_processes_train_as_one_with_the_same_global_batch(dna_table, tmp_path):
    """``trainer.devices=2 trainer.strategy=ddp`` (gloo, CPU) against one process, same global
    batch of 16 and seed, with the autoregressive objective: its loss draws no noise, so the
    two runs train and validate on the same sequences with the same loss; only the float
    summation order differs (each process's gradient of its half, averaged by all-reduce,
    against one gradient of the whole batch; validation metrics summed over processes), about
    1e-7 relative here. Hence rtol 1e-5 on every logged training and validation value, in
    fp32: ``auto`` would pick bf16-mixed on a CPU with native bf16, whose rounding of every
    matmul output magnifies the same reordering past 1e-5 (3.5e-5 seen), so the test pins
    ``trainer.precision=32-true`` and checks the DDP split, not the precision. The
    diffusion objectives differ from this only in their noise, which each process draws from
    (seed, rank, step) (``test_each_step_and_process_draws_its_own_noise``), so their curves
    agree in distribution, not value by value."""
    common = [
        "trainer.max_steps=12",
        "trainer.val_check_interval=6",
        "diffusion.objective.name=autoregressive",
        "trainer.precision=32-true",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    args = micro(dna_table, tmp_path, "run=two", "trainer.devices=2", "trainer.strategy=ddp")
    two = subprocess.Popen(
        [sys.executable, "-m", "d3lm.cli", "train", "--scale", "micro", *args, *common],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    one_cfg = load_config("micro", overrides=micro(dna_table, tmp_path, "run=one", *common))
    one_dir = train(one_cfg)  # meanwhile, in this process
    _, err = two.communicate(timeout=600)
    assert two.returncode == 0, err[-3000:]
    two_dir = tmp_path / "ddp" / "two"

    for metric in ("train/loss", "train/bpn", "val/loss", "val/bpn"):
        a, b = curve(two_dir, metric), curve(one_dir, metric)
        assert list(a.index) == list(b.index) and len(a) > 1, metric
        np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-5, err_msg=metric)
    # Adam divides each gradient element by its own running scale, which magnifies the float
    # differences of elements whose gradient is near zero: 1e-4 against updates of up to
    # lr = 3e-3 per step.
    a, b = (load_model(d).state_dict() for d in (two_dir, one_dir))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-4)
    # process 0 alone wrote: one config, one log session
    assert sorted(p.name for p in two_dir.iterdir()) == ["checkpoints", "config.yaml", "logs"]
    assert [p.name for p in (two_dir / "logs").iterdir()] == ["version_0"]
    # and the DDP-trained checkpoint samples like any other
    one_cfg.sample.bp, one_cfg.sample.sampler.name = 47, "left_to_right"
    out = sample(one_cfg, two_dir, out=tmp_path / "s.fa")
    assert [len(s) for _, s in read_fasta(out)] == [47] * one_cfg.sample.n
