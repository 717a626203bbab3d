"""The oracle of a dataset recipe: the shipped network when the prepared data are the data it
was trained on, otherwise one trained here (once, cached by the data's content).

This is where an ``oracle`` distance's weights come from when none are given: the data recipe is
prepared (downloaded on first use) and its content checksum compared with the shipped oracle's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from d3lm.data.recipes import prepare
from d3lm.metrics.features.oracle import shipped_oracle
from d3lm.oracle.train import OracleConfig, data_checksum, read_labelled, train_oracle

log = logging.getLogger(__name__)

#: The recipe whose oracle measures ``oracle`` distances unless a config names another.
DEFAULT_DATASET = "dhs"


def default_oracle(dataset: str, cache_dir: Path) -> Path:
    """The ``oracle.pt`` that ``oracle`` distances on recipe ``dataset`` measure with: the
    shipped network when the prepared data's content checksum is the one it was trained on, so
    every machine uses the same instrument; otherwise one trained here with the default config
    (logged, since its distances are then not comparable with rows scored by the shipped one)."""
    data = prepare(dataset, Path(cache_dir))
    shipped = shipped_oracle(dataset)
    if shipped is not None and shipped[1]["data_checksum"] == data_checksum(read_labelled(data)):
        return shipped[0]
    reason = "its data differ from the shipped oracle's" if shipped else "no oracle ships for it"
    log.warning("oracle for %s: training one under %s (%s)", dataset, cache_dir, reason)
    return train_oracle(data, Path(cache_dir))


def with_checkpoint(params: Mapping[str, Any], cache_dir: Path) -> dict[str, Any]:
    """The ``oracle`` extractor's parameters with its weights resolved: a config may name a
    ``dataset`` recipe (default :data:`DEFAULT_DATASET`) and a ``cache_dir`` instead of a
    ``checkpoint``; they pick :func:`default_oracle` and are not the extractor's own."""
    params = dict(params)
    dataset = params.pop("dataset", DEFAULT_DATASET)
    cache = Path(params.pop("cache_dir", cache_dir))
    if params.get("checkpoint") is None and params.get("model") is None:
        params["checkpoint"] = default_oracle(dataset, cache)
    return params


def equals_shipped(dataset: str, checksum: str) -> bool | None:
    """Whether weights with sha256 ``checksum`` are the shipped oracle of ``dataset`` (None when
    none ships)."""
    shipped = shipped_oracle(dataset)
    return None if shipped is None else shipped[1]["checksum"] == checksum


def oracle_train(dataset: str, cache_dir: Path, config: OracleConfig | None = None) -> dict:
    """``d3lm oracle train``: train (or reuse) the oracle on recipe ``dataset``; its metadata.

    The returned dict (``oracle.json`` beside the checkpoint, plus ``checkpoint`` and
    ``equals_shipped``) has ``checksum`` (sha256 of the weights), ``test_accuracy``,
    ``valid_accuracy``, ``classes`` and the config; ``equals_shipped`` says whether the weights
    are bitwise the oracle shipped for ``dataset`` (null when none ships).
    """
    path = train_oracle(prepare(dataset, cache_dir), cache_dir, config or OracleConfig())
    meta = json.loads(path.with_name("oracle.json").read_text())
    shipped = equals_shipped(dataset, meta["checksum"])
    return {"checkpoint": str(path), **meta, "equals_shipped": shipped}
