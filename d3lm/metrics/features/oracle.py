"""``oracle`` features: the penultimate layer of a small CNN trained on a real labelled task.

The suite trains it itself (``d3lm oracle train``, :mod:`d3lm.metrics.oracle_train`) because Sei
weights are not always at hand; a network that must tell cell types apart from sequence alone
has to see motifs and their arrangement, which k-mer spectra cannot.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from d3lm.errors import D3lmError
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


def load_oracle(path: str | os.PathLike[str]) -> tuple[OracleCNN, dict[str, object]]:
    """The network and its saved metadata (classes, config, accuracy) from ``oracle.pt``."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model = OracleCNN(len(saved["classes"]), **saved["model"])
        model.load_state_dict(saved["state_dict"])
    except (KeyError, RuntimeError) as err:
        raise D3lmError(f"{path}: not an oracle checkpoint written by d3lm: {err}") from None
    return model.eval(), {k: v for k, v in saved.items() if k != "state_dict"}


@FEATURE_EXTRACTORS.register("oracle")
class OracleFeatures(FeatureExtractor):
    """Penultimate-layer features of a trained oracle CNN.

    ``checkpoint`` is an ``oracle.pt``; without one, the oracle for recipe ``dataset`` is trained
    (once, cached by checksum under ``cache_dir``) with the default :class:`OracleConfig`.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | None = None,
        dataset: str = "dhs",
        cache_dir: str | os.PathLike[str] = ".cache/d3lm",
        batch_size: int = 512,
        model: OracleCNN | None = None,
    ) -> None:
        if model is None:
            if checkpoint is None:
                from d3lm.data.recipes import prepare  # only this path needs the data recipes
                from d3lm.metrics.oracle_train import train_oracle

                checkpoint = train_oracle(prepare(dataset, Path(cache_dir)), Path(cache_dir))
            model, _ = load_oracle(checkpoint)
        self.model = model.eval()
        self.batch_size = batch_size
        self.dim = self.model.features[0].out_features

    @torch.no_grad()
    def __call__(self, seqs: Sequence[str]) -> torch.Tensor:
        chunks = [
            self.model.embed(one_hot(seqs[i : i + self.batch_size])).double()
            for i in range(0, len(seqs), self.batch_size)
        ]
        return torch.cat(chunks) if chunks else torch.zeros(0, self.dim, dtype=torch.float64)
