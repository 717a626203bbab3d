"""Progress bars: shown on a terminal, silent off one or when switched off, and never a change
to what is sampled or scored."""

from __future__ import annotations

import io
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from d3lm.config import load_config
from d3lm.evaluate import EvaluateOptions, Evaluator, evaluate_samples
from d3lm.metrics.features.kmer import KmerFeatures
from d3lm.sampling import NetworkDenoiser, Sampler

MASK, V = 0, 5


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def denoiser() -> NetworkDenoiser:
    torch.manual_seed(0)
    emb, head = nn.Embedding(V, 8), nn.Linear(8, V)
    return NetworkDenoiser(emb, head, mask_id=MASK, vocab_size=V)


def draw(denoiser, monkeypatch, stream, progress):
    monkeypatch.setattr(sys, "stderr", stream)
    layout = torch.ones(12, V, dtype=torch.bool)
    layout[:, MASK] = False
    sampler = Sampler(steps=4)
    return sampler.sample(denoiser, 10, layout, seed=3, batch_size=4, progress=progress)


def test_sampling_bar_counts_sequences_and_changes_nothing(denoiser, monkeypatch):
    quiet = draw(denoiser, monkeypatch, Terminal(), progress=False)
    shown = Terminal()
    loud = draw(denoiser, monkeypatch, shown, progress=True)
    assert torch.equal(quiet, loud)
    text = shown.getvalue()
    assert text.startswith("\rsample:   0%|") and "| 10/10 [" in text  # done / total


@pytest.mark.parametrize("stream, progress", [(Terminal(), False), (io.StringIO(), True)])
def test_sampling_bar_silent_when_off_or_not_a_terminal(denoiser, monkeypatch, stream, progress):
    draw(denoiser, monkeypatch, stream, progress)
    assert stream.getvalue() == ""


def made_sets(n: int, length: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(row) for row in rng.choice(list("ACGT"), size=(n, length))]


def test_batched_feature_extraction_equals_one_call():
    seqs = made_sets(23, 40, seed=0)
    batched = KmerFeatures(ks=(1, 2, 3))
    batched.batch_size = 5
    evaluator = Evaluator(seqs, {"kmer": batched}, progress=True)
    assert torch.equal(evaluator.features["kmer"], KmerFeatures(ks=(1, 2, 3))(seqs))


def test_evaluation_bars_per_stage_and_per_feature_batch(monkeypatch):
    reference, samples = made_sets(40, 30, seed=1), made_sets(8, 30, seed=2)
    features = KmerFeatures(ks=(1, 2))
    features.batch_size = 4

    def run(stream: io.StringIO, progress: bool) -> pd.DataFrame:
        monkeypatch.setattr(sys, "stderr", stream)
        options = EvaluateOptions(baselines={"uniform": {}}, motifs=False, progress=progress)
        return evaluate_samples(samples, reference, None, {"kmer": features}, options)

    shown, silent = Terminal(), Terminal()
    pd.testing.assert_frame_equal(run(shown, True), run(silent, False))
    text = shown.getvalue()
    assert "evaluate" in text and "4/4" in text  # reference, samples, real, uniform
    assert "kmer features:   0%|          | 0/5" in text  # 20 reference seqs, batches of 4
    assert silent.getvalue() == ""


def test_progress_switches_are_config_keys():
    cfg = load_config(overrides=["sample.progress=false", "evaluate.progress=false"])
    assert cfg.sample.progress is False and cfg.evaluate.progress is False
    assert load_config().sample.progress is True
