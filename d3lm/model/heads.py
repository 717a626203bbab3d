"""Output heads on top of the encoder's hidden states."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from d3lm.model.backbone import BackboneConfig, init_weights


class LMHead(nn.Module):
    """ESM/RoBERTa LM head: dense -> exact GELU -> LayerNorm -> decoder + separate bias.

    The decoder has no bias of its own and ``bias`` is a separate parameter, matching NT v2's
    ``lm_head.{dense,layer_norm,decoder}`` and ``lm_head.bias``. Works on any leading shape, so
    samplers can run it only at the positions they are about to commit.
    """

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden, cfg.hidden)
        self.layer_norm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
        self.decoder = nn.Linear(cfg.hidden, cfg.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.apply(init_weights)

    def forward(self, h: Tensor) -> Tensor:
        """Logits (..., vocab) for hidden states (..., hidden)."""
        return self.decoder(self.layer_norm(F.gelu(self.dense(h)))) + self.bias
