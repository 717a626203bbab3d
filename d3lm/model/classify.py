"""Sequence-level readouts of the encoder: pooling (token states -> one vector per sequence) and
classification heads, each a registered plugin so that a fine-tuning config names them."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from d3lm.model.backbone import init_weights
from d3lm.params import PositiveInt, Probability
from d3lm.registry import Registry

POOLINGS: Registry[Any] = Registry("pooling")
CLASSIFIER_HEADS: Registry[Any] = Registry("classifier_head")


@POOLINGS.register("cls")
class ClsPooling(nn.Module):
    """The state of the ``<cls>`` token at position 0, as NT v2's fine-tuning reads it."""

    def forward(self, states: Tensor, real: Tensor) -> Tensor:
        return states[:, 0]


@POOLINGS.register("mean")
class MeanPooling(nn.Module):
    """The mean state of the sequence's own tokens (``<cls>`` and pads excluded), so padding a
    batch to its longest row never changes a row's vector."""

    def forward(self, states: Tensor, real: Tensor) -> Tensor:
        weights = real.unsqueeze(-1).to(states.dtype)
        return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


@CLASSIFIER_HEADS.register("linear")
class LinearHead(nn.Module):
    """Dropout, then one linear layer to the class logits (NT v2's fine-tuning head)."""

    def __init__(self, hidden: int, classes: int, dropout: Probability = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, classes))
        self.apply(init_weights)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.net(pooled)


@CLASSIFIER_HEADS.register("mlp")
class MLPHead(nn.Module):
    """Dropout, linear to ``width`` (default: the backbone's hidden size), GELU, dropout, linear:
    combines pooled features non-linearly, which a frozen backbone cannot do for the head."""

    def __init__(
        self,
        hidden: int,
        classes: int,
        dropout: Probability = 0.1,
        width: PositiveInt | None = None,
    ) -> None:
        super().__init__()
        width = width or hidden
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(hidden, width),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(width, classes),
        )
        self.apply(init_weights)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.net(pooled)
