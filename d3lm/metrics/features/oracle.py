"""``oracle`` features: the penultimate layer of a small CNN trained on a real labelled task.

The suite trains it itself (``d3lm oracle train``, :mod:`d3lm.oracle`) because Sei weights are
not always at hand; a network that must tell cell types apart from sequence alone has to see
motifs and their arrangement, which k-mer spectra cannot. This module only loads and embeds: it
downloads no data and trains nothing.

The network is the instrument every ``oracle`` distance is measured with, so it is identified by
the sha256 of its weights (:func:`state_checksum`), verified on load and reported as
``provenance``; the DHS oracle trained here ships with the package (``weights/``) so every
machine measures with the same one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from d3lm.errors import D3lmError, NotFound
from d3lm.metrics.features.base import FeatureExtractor, one_hot
from d3lm.registry import FEATURE_EXTRACTORS


class OracleCNN(nn.Module):
    """Three conv stages, global max pool, a ``width``-unit feature layer, a class layer.

    Global pooling makes it length-agnostic; ``features`` (after the ReLU of the feature layer)
    is what Fréchet distances compare.
    """

    def __init__(self, n_classes: int, channels: int = 128, width: int = 128) -> None:
        super().__init__()

        def stage(c_in: int, kernel: int, pool: int) -> list[nn.Module]:
            layers: list[nn.Module] = [
                nn.Conv1d(c_in, channels, kernel, padding=kernel // 2),
                nn.BatchNorm1d(channels),
                nn.ReLU(),
            ]
            return [*layers, nn.MaxPool1d(pool)] if pool > 1 else layers

        self.body = nn.Sequential(*stage(4, 15, 4), *stage(channels, 7, 4), *stage(channels, 5, 1))
        self.features = nn.Sequential(nn.Linear(channels, width), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(width, n_classes))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.body(x).amax(dim=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


#: Oracles shipped with the package, by dataset recipe: ``weights/<name>.pt`` and its ``.json``.
WEIGHTS = Path(__file__).with_name("weights")
SHIPPED = {"dhs": "oracle-dhs"}


def state_checksum(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 (hex) over every entry's name and tensor bytes, names sorted: equal exactly when
    the weights are bitwise equal, whatever the file they were saved in."""
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode() + b"\0")
        digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_oracle(path: str | os.PathLike[str]) -> tuple[OracleCNN, dict[str, object]]:
    """The network and its saved metadata (classes, config, accuracy, ``checksum``) from
    ``oracle.pt``; ``checksum`` is recomputed from the weights, and a checkpoint whose recorded
    checksum disagrees is refused (its weights are not the network it claims to be)."""
    if not Path(path).is_file():
        raise NotFound(f"{path}: no such oracle checkpoint (`d3lm oracle train` writes one)")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model = OracleCNN(len(saved["classes"]), **saved["model"])
        model.load_state_dict(saved["state_dict"])
    except (KeyError, RuntimeError) as err:
        raise D3lmError(f"{path}: not an oracle checkpoint written by d3lm: {err}") from None
    checksum = state_checksum(saved["state_dict"])
    if saved.get("checksum", checksum) != checksum:
        raise D3lmError(
            f"{path}: the weights' sha256 is {checksum}, the checkpoint records "
            f"{saved['checksum']}; the file was altered"
        )
    meta = {k: v for k, v in saved.items() if k != "state_dict"}
    return model.eval(), {**meta, "checksum": checksum}


def shipped_oracle(dataset: str) -> tuple[Path, dict[str, object]] | None:
    """The shipped ``oracle.pt`` for recipe ``dataset`` and its recorded metadata (the JSON
    beside it: checksum, test accuracy, the training data's content checksum), if one ships."""
    if dataset not in SHIPPED:
        return None
    path = WEIGHTS / f"{SHIPPED[dataset]}.pt"
    return path, json.loads(path.with_suffix(".json").read_text())


@FEATURE_EXTRACTORS.register("oracle")
class OracleFeatures(FeatureExtractor):
    """Penultimate-layer features of a trained oracle CNN.

    ``checkpoint`` is an ``oracle.pt`` (the shipped one, :func:`shipped_oracle`, or one that
    ``d3lm oracle train`` wrote); ``model`` is a network in memory instead. Which weights a
    dataset's distances use, trained here when none fit, is decided above the metrics
    (:func:`d3lm.oracle.datasets.default_oracle`). ``provenance`` names the network: the first
    12 hex digits of its weights' sha256 and its test accuracy (None when ``model`` came without
    one). ``classes`` are the checkpoint's (a ``model`` comes with its own, or none); with them
    the oracle also judges which class a sequence is (:mod:`d3lm.metrics.design`).
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | None = None,
        batch_size: int = 512,
        model: OracleCNN | None = None,
        classes: Sequence[str] = (),
    ) -> None:
        accuracy = None
        if model is None:
            if checkpoint is None:
                raise D3lmError(
                    "oracle features need weights: a checkpoint (an oracle.pt: the shipped one "
                    "or one `d3lm oracle train` wrote) or a model"
                )
            model, meta = load_oracle(checkpoint)
            accuracy = meta.get("test_accuracy")
            classes = classes or meta["classes"]  # type: ignore[assignment]
        self.model = model.eval()
        self.classes = tuple(str(c) for c in classes)
        if self.classes and len(self.classes) != self.model.head[-1].out_features:
            raise D3lmError(
                f"oracle classes {list(self.classes)}: the network has "
                f"{self.model.head[-1].out_features} outputs"
            )
        self._provenance = {
            "oracle": state_checksum(self.model.state_dict())[:12],
            "oracle_test_accuracy": None if accuracy is None else float(accuracy),
        }
        self.batch_size = batch_size
        self.dim = self.model.features[0].out_features

    @property
    def provenance(self) -> dict[str, object]:
        return dict(self._provenance)

    @torch.no_grad()
    def __call__(self, seqs: Sequence[str]) -> torch.Tensor:
        chunks = [
            self.model.embed(one_hot(seqs[i : i + self.batch_size])).double()
            for i in range(0, len(seqs), self.batch_size)
        ]
        return torch.cat(chunks) if chunks else torch.zeros(0, self.dim, dtype=torch.float64)

    @torch.no_grad()
    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits (n, classes) from this extractor's features: the head after the feature
        layer, so judging a set's classes costs no second pass over its sequences."""
        head = self.model.head[-1]
        return head(features.to(head.weight.dtype))
