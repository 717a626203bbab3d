"""Output heads on top of the encoder's hidden states."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from d3lm.model.backbone import BackboneConfig, Embeddings, init_weights


class LMHead(nn.Module):
    """ESM/RoBERTa LM head: dense -> exact GELU -> LayerNorm -> decoder + separate bias.

    The decoder has no bias of its own and ``bias`` is a separate parameter, matching NT v2's
    ``lm_head.{dense,layer_norm,decoder}`` and ``lm_head.bias``. Works on any leading shape, so
    samplers can run it only at the positions they are about to commit.

    With ``cfg.tie_embeddings`` there is no decoder: the logits multiply the encoder's embedding
    table (``embeddings``, held by reference, not as a submodule, so its parameters are stored
    once, under the encoder).
    """

    def __init__(self, cfg: BackboneConfig, embeddings: Embeddings | None = None) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden, cfg.hidden)
        self.layer_norm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
        self.decoder: nn.Linear | None = None
        if cfg.tie_embeddings:
            if embeddings is None:
                raise ValueError("tie_embeddings needs the encoder's embeddings for the LM head")
            object.__setattr__(self, "tied", embeddings)
        else:
            self.decoder = nn.Linear(cfg.hidden, cfg.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.apply(init_weights)

    def forward(self, h: Tensor) -> Tensor:
        """Logits (..., vocab) for hidden states (..., hidden)."""
        x = self.layer_norm(F.gelu(self.dense(h)))
        if self.decoder is None:
            return F.linear(x, self.tied.weight().to(x.dtype)) + self.bias
        return self.decoder(x) + self.bias
