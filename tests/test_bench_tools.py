"""The pieces `make bench` relies on: its FLOP accounting and how it rewrites BENCHMARKS.md."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from bench_training import model_flops
from machine import splice

from d3lm.model import PRESETS, LMHead, NTv2Encoder


@pytest.mark.parametrize("preset", ["tiny", "nt-v2-50m"])
def test_model_flops_count_every_matmul_weight_six_times_per_token(preset):
    """6 x (weights of every linear layer) per token, plus attention's QK^T and AV: the weights
    counted independently, from the modules themselves."""
    cfg = PRESETS[preset]
    with torch.device("meta"):
        modules = [*NTv2Encoder(cfg).modules(), *LMHead(cfg).modules()]
    weights = sum(m.weight.numel() for m in modules if isinstance(m, torch.nn.Linear))
    tokens, length = 8 * 344, 344
    attention = 3 * cfg.n_layers * 4 * length * cfg.hidden * tokens  # fwd + 2x bwd, 2 matmuls
    assert model_flops(cfg, tokens, length, ffn_mats=3) == 6 * weights * tokens + attention


def test_splice_rewrites_only_its_section(tmp_path):
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("a\n<!-- bench:x -->\nold\n<!-- /bench:x -->\nb\n<!-- bench:y -->\nkeep\n"
                   "<!-- /bench:y -->\n")  # fmt: skip
    splice(doc, "x", "new\ntable\n")
    assert doc.read_text() == (
        "a\n<!-- bench:x -->\nnew\ntable\n<!-- /bench:x -->\nb\n<!-- bench:y -->\nkeep\n"
        "<!-- /bench:y -->\n"
    )
    with pytest.raises(SystemExit, match="bench:z"):
        splice(doc, "z", "text")
    assert not list(tmp_path.glob("*.tmp"))
