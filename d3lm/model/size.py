"""Parameter counts of a backbone shape, counted on the meta device (nothing is allocated).

Its own module because it needs both the encoder and the LM head, and the head is built on the
encoder's pieces: here both are imported at the top, with no cycle between them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from d3lm.model.backbone import BackboneConfig, NTv2Encoder
from d3lm.model.heads import LMHead


def count_parameters(cfg: BackboneConfig, include_head: bool = True) -> int:
    """Parameters of the encoder (plus the LM head by default), counted on the meta device.

    NT v2 50M is reported at 55.9M parameters; our ``nt-v2-50m`` preset with its head has
    54,855,179. The difference, 1,049,600 = 2050 x 512, is NT's learned position table, which its
    checkpoint carries although rotary attention never reads it; we do not build it.
    """
    with torch.device("meta"):
        encoder = NTv2Encoder(cfg, _placeholder_codes(cfg))
        modules: list[nn.Module] = [encoder]
        if include_head:
            modules.append(LMHead(cfg, encoder.embeddings))
    return sum(p.numel() for m in modules for p in m.parameters())


def _placeholder_codes(cfg: BackboneConfig) -> Tensor | None:
    """A 6-wide code table for counting parameters of a ``nucleotide_embeddings`` model."""
    return torch.zeros(cfg.vocab_size, 6, dtype=torch.long) if cfg.nucleotide_embeddings else None
