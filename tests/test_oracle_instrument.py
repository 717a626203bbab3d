"""The oracle is a fixed instrument: deterministic training, a checksum of its weights carried in
its metadata and ``provenance``, a cache keyed by the data's content, and the shipped DHS network
used wherever the prepared data is the data it was trained on."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from d3lm.errors import D3lmError, NotFound
from d3lm.evaluate import build_extractors
from d3lm.metrics.features import KmerFeatures, OracleFeatures
from d3lm.metrics.features.oracle import load_oracle, shipped_oracle, state_checksum
from d3lm.oracle import datasets
from d3lm.oracle.train import OracleConfig, data_checksum, read_labelled, train_oracle

CONFIG = OracleConfig(channels=16, width=16, epochs=4, batch_size=32, lr=1e-2)
MOTIFS = ["TGACTCAT", "CCGGAAGT"]


def labelled_frame(n: int = 320, length: int = 40, seed: int = 0) -> pd.DataFrame:
    """Uniform DNA with its label's motif planted once; 240 train, 40 valid, 40 test rows."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(MOTIFS), n)
    seqs = []
    for label in labels:
        text = "".join(rng.choice(list("ACGT"), length))
        start = int(rng.integers(0, length - 8))
        seqs.append(text[:start] + MOTIFS[label] + text[start + 8 :])
    splits = ["train"] * (n - 80) + ["valid"] * 40 + ["test"] * 40
    return pd.DataFrame({"sequence": seqs, "label": [f"c{i}" for i in labels], "split": splits})


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("oracle-data") / "cells.parquet"
    labelled_frame().to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def trained(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_oracle(data, tmp_path_factory.mktemp("oracle-cache"), CONFIG)


def checksum(path: Path) -> str:
    return str(load_oracle(path)[1]["checksum"])


def test_training_again_gives_the_same_weights_and_restores_torch_state(data, trained, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(5)
        again = train_oracle(data, tmp_path, CONFIG)  # a fresh cache: trained, not reused
        draw = torch.rand(1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert again != trained and checksum(again) == checksum(trained)
    torch.manual_seed(5)
    assert torch.equal(torch.rand(1), draw)  # the caller's RNG stream is untouched
    assert not torch.are_deterministic_algorithms_enabled()


def test_another_seed_gives_other_weights(data, trained, tmp_path):
    other = train_oracle(data, tmp_path, dataclasses.replace(CONFIG, seed=1))
    assert checksum(other) != checksum(trained)


def test_checksum_and_accuracy_are_recorded_and_in_provenance(trained):
    model, meta = load_oracle(trained)
    recorded = json.loads(trained.with_name("oracle.json").read_text())
    digest = state_checksum(model.state_dict())
    assert len(digest) == 64
    assert meta["checksum"] == recorded["checksum"] == digest
    assert meta["test_accuracy"] == recorded["test_accuracy"] > 0.75  # it learned: chance 0.5
    assert OracleFeatures(checkpoint=trained).provenance == {
        "oracle": digest[:12],
        "oracle_test_accuracy": recorded["test_accuracy"],
    }
    assert KmerFeatures().provenance == {}


def test_a_checkpoint_whose_weights_changed_is_refused(trained, tmp_path):
    saved = torch.load(trained, weights_only=True)
    saved["state_dict"]["head.1.bias"] += 1e-3
    torch.save(saved, tmp_path / "altered.pt")
    with pytest.raises(D3lmError, match="altered"):
        load_oracle(tmp_path / "altered.pt")


def test_cache_key_follows_content_not_parquet_bytes(data, trained, tmp_path):
    frame = pd.read_parquet(data)
    relaid = tmp_path / "relaid.parquet"
    frame.to_parquet(relaid, compression="gzip", row_group_size=50, index=True)
    assert relaid.read_bytes() != data.read_bytes()
    cache = trained.parents[2]
    assert train_oracle(relaid, cache, CONFIG) == trained  # found in the cache, not retrained
    frame.loc[0, "label"] = "c1" if frame.loc[0, "label"] == "c0" else "c0"
    assert data_checksum(frame) != data_checksum(read_labelled(data))


def test_shipped_oracle_loads_and_its_recorded_checksum_holds():
    path, recorded = shipped_oracle("dhs")
    model, meta = load_oracle(path)
    assert meta["checksum"] == recorded["checksum"] == state_checksum(model.state_dict())
    assert meta["test_accuracy"] == recorded["test_accuracy"]
    assert recorded["config"] == dataclasses.asdict(OracleConfig())
    assert path.stat().st_size < 1_000_000


def test_features_without_weights_are_refused_not_trained(tmp_path):
    with pytest.raises(D3lmError, match="need weights"):
        OracleFeatures()
    with pytest.raises(NotFound, match="no such oracle checkpoint"):
        OracleFeatures(checkpoint=tmp_path / "oracle.pt")
    assert not list(tmp_path.iterdir())  # nothing trained, nothing downloaded


@pytest.fixture
def dhs_is_tiny(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``prepare("dhs", ...)`` returns the tiny table: nothing is downloaded."""
    monkeypatch.setattr(datasets, "prepare", lambda name, cache_dir, params=None: data)


def test_dhs_features_use_the_shipped_oracle_when_data_match(dhs_is_tiny, monkeypatch, tmp_path):
    _, recorded = shipped_oracle("dhs")
    monkeypatch.setattr(datasets, "data_checksum", lambda frame: recorded["data_checksum"])
    features = build_extractors({"oracle": {"dataset": "dhs"}}, tmp_path)["oracle"]
    assert features.provenance == {
        "oracle": recorded["checksum"][:12],
        "oracle_test_accuracy": recorded["test_accuracy"],
    }
    assert not (tmp_path / "oracle").exists()  # nothing trained


def test_dhs_features_train_their_own_oracle_when_the_data_differ(dhs_is_tiny, tmp_path, caplog):
    _, recorded = shipped_oracle("dhs")
    with caplog.at_level("WARNING", logger="d3lm.oracle.datasets"):
        features = build_extractors({"oracle": {"dataset": "dhs"}}, tmp_path)["oracle"]
    assert features.provenance["oracle"] != recorded["checksum"][:12]
    assert len(list((tmp_path / "oracle").glob("*/oracle.pt"))) == 1
    assert "differ from the shipped oracle's" in caplog.text
