"""Training of the ``oracle`` feature network on a labelled real task, cached by checksum.

The cache key hashes the data file's bytes and the training config, so retraining happens only
when either changes and every run of an experiment sees the same feature space.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from d3lm.errors import D3lmError
from d3lm.io import atomic_path, write_text
from d3lm.metrics.features.base import one_hot
from d3lm.metrics.features.oracle import OracleCNN


@dataclass(frozen=True)
class OracleConfig:
    """Training settings; every field enters the cache key."""

    channels: int = 64
    width: int = 128
    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0


def cache_key(data: Path, config: OracleConfig) -> str:
    digest = hashlib.sha256()
    with open(data, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    digest.update(json.dumps(dataclasses.asdict(config), sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _accuracy(model: OracleCNN, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 1024]).argmax(1) for i in range(0, len(x), 1024)])
    return float((pred == y).float().mean())


def _split(
    frame: pd.DataFrame, name: str, classes: list[str], data: Path
) -> tuple[torch.Tensor, torch.Tensor]:
    part = frame[frame["split"] == name]
    if part.empty:
        raise D3lmError(f"{data}: no rows with split == {name!r}")
    labels = torch.tensor(part["label"].map({c: i for i, c in enumerate(classes)}).to_numpy())
    return one_hot(part["sequence"].tolist()), labels


def train_oracle(data: Path, cache_dir: Path, config: OracleConfig = OracleConfig()) -> Path:
    """Train (or reuse) the oracle on ``data`` (parquet: sequence, label, split); return oracle.pt.

    Model selection uses the valid split; ``oracle.json`` beside the checkpoint records valid and
    test accuracy, classes, config and the data checksum key.
    """
    out = Path(cache_dir) / "oracle" / cache_key(data, config) / "oracle.pt"
    if out.exists():
        return out
    frame = pd.read_parquet(data, columns=["sequence", "label", "split"])
    classes = sorted(frame["label"].unique())
    x_train, y_train = _split(frame, "train", classes, data)
    x_valid, y_valid = _split(frame, "valid", classes, data)
    x_test, y_test = _split(frame, "test", classes, data)

    torch.manual_seed(config.seed)
    model = OracleCNN(len(classes), config.channels, config.width)
    optimiser = torch.optim.AdamW(model.parameters(), config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * -(-len(x_train) // config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, config.lr, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    best = (-1.0, model.state_dict())
    started = time.time()
    for _ in range(config.epochs):
        model.train()
        for batch in torch.randperm(len(x_train)).split(config.batch_size):
            x = x_train[batch]
            flip = torch.rand(len(x)) < 0.5  # reverse-complement augmentation
            x[flip] = x[flip].flip(1, 2)
            loss = loss_fn(model(x), y_train[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        valid_acc = _accuracy(model, x_valid, y_valid)
        if valid_acc > best[0]:
            best = (valid_acc, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[1])
    meta = {
        "classes": classes,
        "model": {"channels": config.channels, "width": config.width},
        "config": dataclasses.asdict(config),
        "data": str(data),
        "valid_accuracy": best[0],
        "test_accuracy": _accuracy(model, x_test, y_test),
        "train_seconds": round(time.time() - started, 1),
    }
    with atomic_path(out) as tmp:
        torch.save({**meta, "state_dict": model.state_dict()}, tmp)
    write_text(out.with_name("oracle.json"), json.dumps(meta, indent=2) + "\n")
    return out
