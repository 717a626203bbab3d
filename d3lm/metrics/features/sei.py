"""``sei`` features: the Sei chromatin model (Chen et al., Nature Genetics 2022), for SFID.

Sei maps 4,096 bp of one-hot DNA to 21,907 chromatin-profile probabilities. The network below
follows the published architecture (FunctionLab/sei-framework, ``model/sei.py``) layer for layer
with the same parameter names, so the official ``sei.pth`` loads without conversion. Weights are
not shipped: download the Sei model archive from the links in the sei-framework README and pass
the path of ``sei.pth`` (inside ``model/``) as ``weights``.

Options that the SFID literature leaves open, fixed here as documented parameters:

- ``layer``: ``"output"`` (default; the 21,907 sigmoid chromatin-profile predictions, what "Sei
  features" usually means), ``"hidden"`` (the 21,907 ReLU units before the last linear layer) or
  ``"spline"`` (the 15,360 B-spline-pooled convolutional features).
- ``pad_value``: sequences shorter than 4,096 bp sit in the centre of the window and the flanks
  are filled with this value in all four channels (0.25 = N, Sei's own encoding of unknown bases).
- ``strand_average``: average the features of the sequence and its reverse complement, as the
  official ``NonStrandSpecific`` wrapper does for predictions.

SFID on the paper's 2,048-bp promoters: ``d3lm evaluate --samples samples.fasta --reference
promoters --features sei --feature-param sei.weights=PATH/sei.pth`` (add ``sei.device=cuda`` on a
GPU); every sample is centred in a 4,096-bp N-padded window.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy.interpolate import BSpline
from torch import nn

from d3lm.errors import D3lmError
from d3lm.metrics.features.base import FeatureExtractor, one_hot
from d3lm.registry import FEATURE_EXTRACTORS

SEI_LENGTH = 4096
SEI_OUTPUTS = 21907
_SPLINE_DF = 16
_LAYERS = ("output", "hidden", "spline")


def bspline_basis(n: int, df: int) -> torch.Tensor:
    """Cubic B-spline basis (n, df) over positions 0..n-1 with df - 4 evenly spaced inner knots.

    Sei pools its final feature map along the sequence with this basis (a smooth, position-aware
    alternative to global pooling); it has no parameters, so it is rebuilt rather than loaded.
    """
    positions = np.arange(n, dtype=np.float64)
    inner = np.linspace(0.0, n - 1.0, df - 2)[1:-1]
    knots = np.concatenate([[0.0] * 4, inner, [n - 1.0] * 4])
    return torch.from_numpy(BSpline.design_matrix(positions, knots, 3).toarray()).float()


def _conv(c_in: int, c_out: int, dilation: int = 1) -> nn.Conv1d:
    kernel = 9 if dilation == 1 else 5
    return nn.Conv1d(c_in, c_out, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)


def _linear_block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    """Two convolutions without activation (the 'lconv' blocks); stages 2 and 3 pool first."""
    head = [nn.MaxPool1d(4, 4), nn.Dropout(0.2)] if pool else []
    return nn.Sequential(*head, _conv(c_in, c_out), _conv(c_out, c_out))


def _relu_block(channels: int, dropout: bool) -> nn.Sequential:
    """Two convolutions with ReLU (the residual 'conv' blocks); stages 2 and 3 drop out first."""
    head = [nn.Dropout(0.2)] if dropout else []
    return nn.Sequential(
        *head, _conv(channels, channels), nn.ReLU(), _conv(channels, channels), nn.ReLU()
    )


class Sei(nn.Module):
    """The Sei network: (B, 4, 4096) one-hot in ACGT order -> (B, 21907) probabilities."""

    def __init__(self, sequence_length: int = SEI_LENGTH, n_outputs: int = SEI_OUTPUTS) -> None:
        super().__init__()
        self.lconv1 = _linear_block(4, 480, pool=False)
        self.conv1 = _relu_block(480, dropout=False)
        self.lconv2 = _linear_block(480, 640, pool=True)
        self.conv2 = _relu_block(640, dropout=True)
        self.lconv3 = _linear_block(640, 960, pool=True)
        self.conv3 = _relu_block(960, dropout=True)
        for i, dilation in enumerate((2, 4, 8, 16, 25), start=1):
            block = nn.Sequential(nn.Dropout(0.1), _conv(960, 960, dilation), nn.ReLU())
            self.add_module(f"dconv{i}", block)
        self.spline_tr = nn.Dropout(0.5)
        basis = bspline_basis(sequence_length // 16, _SPLINE_DF)
        self.register_buffer("spline_basis", basis, persistent=False)
        self.classifier = nn.Sequential(
            nn.Linear(960 * _SPLINE_DF, n_outputs),
            nn.ReLU(),
            nn.Linear(n_outputs, n_outputs),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor, layer: str = "output") -> torch.Tensor:
        h = self.lconv1(x)
        h = self.lconv2(h + self.conv1(h))
        h = self.lconv3(h + self.conv2(h))
        out = self.conv3(h)
        # the first dilated block sees the stage-3 residual sum but adds back only its conv part
        out = out + self.dconv1(out + h)
        for block in (self.dconv2, self.dconv3, self.dconv4, self.dconv5):
            out = out + block(out)
        pooled = (self.spline_tr(out) @ self.spline_basis).flatten(1)
        if layer == "spline":
            return pooled
        hidden = self.classifier[1](self.classifier[0](pooled))
        if layer == "hidden":
            return hidden
        return self.classifier[3](self.classifier[2](hidden))


def _strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop wrapper prefixes ``module.`` (DataParallel) and ``model.`` (Selene wrapper)."""
    out = {}
    for key, value in state.items():
        while key.startswith(("module.", "model.")):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def load_sei_weights(model: Sei, path: str | os.PathLike[str]) -> None:
    """Load an official Sei checkpoint; fail naming missing, unexpected, mis-shaped parameters."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(checkpoint, Mapping) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    state = _strip_prefixes(checkpoint)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mis_shaped = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    )
    if missing or unexpected or mis_shaped:
        raise D3lmError(
            f"{path}: not a Sei checkpoint; missing parameters: {missing or 'none'}; "
            f"unexpected parameters: {unexpected or 'none'}; wrong shapes: {mis_shaped or 'none'}"
        )
    model.load_state_dict(state)


@FEATURE_EXTRACTORS.register("sei")
class SeiFeatures(FeatureExtractor):
    """Sei features for SFID, from the official weights at ``weights`` (see the module doc)."""

    def __init__(
        self,
        weights: str | os.PathLike[str] | None,
        layer: str = "output",
        pad_value: float = 0.25,
        strand_average: bool = True,
        batch_size: int = 8,
        device: str = "cpu",
        model: Sei | None = None,
    ) -> None:
        if layer not in _LAYERS:
            raise D3lmError(f"unknown Sei layer {layer!r}; choose one of {', '.join(_LAYERS)}")
        if model is None:
            if weights is None:
                raise D3lmError("sei features need weights=PATH to the official sei.pth")
            model = Sei()
            load_sei_weights(model, weights)
        self.model = model.to(device).eval()
        self.layer, self.pad_value = layer, pad_value
        self.strand_average, self.batch_size, self.device = strand_average, batch_size, device
        n_out = self.model.classifier[2].out_features
        self.dim = 960 * _SPLINE_DF if layer == "spline" else n_out
        self.length = self.model.spline_basis.shape[0] * 16

    def encode(self, seqs: Sequence[str]) -> torch.Tensor:
        """(n, 4, 4096) input: centred, flanks filled with ``pad_value``."""
        x = one_hot(seqs, self.length)
        lengths = torch.tensor([min(len(s), self.length) for s in seqs])
        left = (self.length - lengths) // 2
        position = torch.arange(self.length)
        inside = (position >= left[:, None]) & (position < (left + lengths)[:, None])
        return torch.where(inside[:, None, :], x, torch.full_like(x, self.pad_value))

    @torch.no_grad()
    def __call__(self, seqs: Sequence[str]) -> torch.Tensor:
        chunks = []
        for start in range(0, len(seqs), self.batch_size):
            x = self.encode(seqs[start : start + self.batch_size]).to(self.device)
            features = self.model(x, self.layer)
            if self.strand_average:
                features = 0.5 * (features + self.model(x.flip(1, 2), self.layer))
            chunks.append(features.double().cpu())
        return torch.cat(chunks) if chunks else torch.zeros(0, self.dim, dtype=torch.float64)
