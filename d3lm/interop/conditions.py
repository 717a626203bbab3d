"""The condition table of a conditional model across NT v2 import and export.

NT v2 has no class labels: its weights are the unconditioned network. An export therefore leaves
the condition table out (the network then reads ``<cls>`` where training saw a condition token,
which the log says), and an import into a conditional model starts the table fresh, as the
backbone initialises it, while every NT v2 tensor is kept as it is.
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

#: The seed of a freshly imported condition table, so an import is reproducible.
FRESH_SEED = 0


def without_condition_table(
    state: Mapping[str, Tensor], source: str | os.PathLike[str]
) -> dict[str, Tensor]:
    """``state`` without the condition table, with a warning naming ``source`` if it had one."""
    if CONDITION_TABLE not in state:
        return dict(state)
    log.warning(
        "%s: a conditional model; NT v2 holds no class labels, so its condition table (%d "
        "tokens) is left out and the export is the network with no condition token",
        source,
        state[CONDITION_TABLE].shape[0],
    )
    return {name: tensor for name, tensor in state.items() if name != CONDITION_TABLE}


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
    words = state["encoder.embeddings.word_embeddings.weight"]
    generator = torch.Generator().manual_seed(FRESH_SEED)
    table = torch.randn(plugin.n_tokens, words.shape[1], generator=generator) * INIT_STD
    return {CONDITION_TABLE: table.to(words.dtype)}
