"""The condition table of a conditional model across NT v2 import and export.

NT v2 has no class labels: its weights are the unconditioned network. An export therefore leaves
the condition table out and embeds ``<cls>`` as the null token (the unconditional model; the log
says so), and an import into a conditional model starts the table fresh, as the backbone
initialises it, while every NT v2 tensor is kept as it is. Fine-tuning a classifier from a
conditional run reads its encoder the same way.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

import d3lm.conditioning  # noqa: F401  (registers the conditioning plugins)
from d3lm.model.backbone import INIT_STD
from d3lm.registry import CONDITIONINGS

log = logging.getLogger(__name__)

#: The state-dict name of the condition table (``Embeddings.condition_embeddings``).
CONDITION_TABLE = "encoder.embeddings.condition_embeddings.weight"
WORD_TABLE = "encoder.embeddings.word_embeddings.weight"

#: The seed of a freshly imported condition table, so an import is reproducible.
FRESH_SEED = 0


def without_condition_table(
    state: Mapping[str, Tensor], source: str | os.PathLike[str], cls_id: int
) -> dict[str, Tensor]:
    """``state`` as a network with no condition token: the condition table left out and
    ``<cls>``, the slot condition tokens fill, embedded as the null token was (the context in
    which training showed the model no label, ``p_uncond`` of the time), with a warning naming
    ``source`` if it was a conditional model. An NT v2 export and a fine-tuned classifier then
    run the model's own unconditional network."""
    if CONDITION_TABLE not in state:
        return dict(state)
    table = state[CONDITION_TABLE]
    log.warning(
        "%s: a conditional model; NT v2 and classifiers hold no class labels, so its condition "
        "table (%d tokens) is left out and <cls> takes the null token's embedding (the model "
        "with no label)",
        source,
        table.shape[0],
    )
    out = {name: tensor for name, tensor in state.items() if name != CONDITION_TABLE}
    words = out[WORD_TABLE].clone()
    words[cls_id] = table[-1].to(words.dtype)  # the null token is the table's last row
    out[WORD_TABLE] = words
    return out


def fresh_condition_table(
    conditioning: Mapping[str, Any], vocab_size: int, state: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """The state-dict entry a ``conditioning`` section's model needs beyond NT v2's tensors in
    ``state``: its condition table drawn as the backbone initialises one, in the word table's
    width and dtype (nothing for an unconditional section)."""
    plugin = CONDITIONINGS.build(
        conditioning["name"], conditioning.get("params"), first_id=vocab_size
    )
    if not plugin.n_tokens:
        return {}
    words = state[WORD_TABLE]
    generator = torch.Generator().manual_seed(FRESH_SEED)
    table = torch.randn(plugin.n_tokens, words.shape[1], generator=generator) * INIT_STD
    return {CONDITION_TABLE: table.to(words.dtype)}
