"""Autoregressive decoding in the shared step loop: the ``left_to_right`` order, a sampler whose
step count follows the layout (one token per step), and the denoiser of a causal network.

A causal (AR) model predicts token i from the hidden state at i - 1, which under causal attention
has seen tokens < i only. Committed left to right, one token per step, every prediction
conditions on committed tokens alone, so the loop draws exactly from the AR model's
p(x) = prod_i p(x_i | x_<i); any order that commits a token before its left neighbour would
condition it on masks, which a causal model never saw in training.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from d3lm.registry import UNMASK_ORDERS
from d3lm.sampling.base import StepContext, UnmaskOrder
from d3lm.sampling.denoiser import Denoiser, NetworkDenoiser
from d3lm.sampling.loop import Sampler


@UNMASK_ORDERS.register("left_to_right")
class LeftToRightOrder(UnmaskOrder):
    """Leftmost masked position first (score = -position): autoregressive decoding."""

    def scores(self, ctx: StepContext) -> Tensor:
        pos = torch.arange(ctx.ids.shape[1], dtype=torch.float64, device=ctx.ids.device)
        return (-pos).expand_as(ctx.confidence)


class LeftToRightSampler(Sampler):
    """``Sampler`` whose ``steps`` default to the layout's free positions (one token per step).

    The AR setting needs T = number of tokens, which depends on the requested length, so it is
    set per call; an explicit ``steps`` keeps the usual fixed step count (several leftmost
    tokens per step: exact for a bidirectional denoiser only in the limit of one per step, and
    never exact for a causal one).
    """

    def __init__(self, *args: Any, steps: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, steps=1 if steps is None else steps, **kwargs)
        self.per_token = steps is None

    def infill(
        self, denoiser: Denoiser, ids: Tensor, known: Tensor, layout: Tensor, **kw: Any
    ) -> Tensor:
        if self.per_token:
            # every position whose layout allows several tokens; known ones finish early
            self.steps = max(1, int((layout.sum(-1) != 1).sum()))
        return super().infill(denoiser, ids, known, layout, **kw)


# The registry checks config params against the signature: show Sampler's, with steps=None.
LeftToRightSampler.__signature__ = inspect.signature(Sampler).replace(  # type: ignore[attr-defined]
    parameters=[
        p.replace(default=None) if p.name == "steps" else p
        for p in inspect.signature(Sampler).parameters.values()
    ]
)


class CausalDenoiser(NetworkDenoiser):
    """A causal network as a denoiser: the features of position i are the encoder's hidden
    state at i - ``shift`` under causal attention (zeros before ``shift``: ``<cls>``, forced).

    ``encoder(ids, causal=True)`` must give (B, L, H). ``features(ids, at)`` runs the whole
    sequence and indexes it (the backbone's sparse last block and its cached keys and values
    are bidirectional only).
    """

    def __init__(
        self,
        encoder: Callable[..., Tensor],
        head: Callable[[Tensor], Tensor],
        mask_id: int,
        vocab_size: int,
        autocast: torch.dtype | None = None,
        shift: int = 1,
    ) -> None:
        super().__init__(encoder, head, mask_id, vocab_size, autocast)
        if shift < 1:
            raise ValueError(f"a causal denoiser predicts ahead: shift must be >= 1, got {shift}")
        self.shift = shift
        self.kv_capable = False

    @torch.no_grad()
    def features(self, ids: Tensor, at: Tensor | None = None) -> Tensor:
        self.nfe += ids.shape[0]
        with self._context(ids.device):
            h = self.encoder(ids, causal=True)
        shifted = torch.zeros_like(h)
        shifted[:, self.shift :] = h[:, : h.shape[1] - self.shift]
        return shifted if at is None else shifted[at]


def network_denoiser(
    encoder: Callable[..., Tensor],
    head: Callable[[Tensor], Tensor],
    objective: Any,
    mask_id: int,
    vocab_size: int,
    autocast: torch.dtype | None = None,
) -> NetworkDenoiser:
    """The denoiser for a network trained with ``objective``, read from its declared ``causal``
    and ``shift`` (logits at i score token i + shift), never from its name."""
    if objective.causal:
        return CausalDenoiser(encoder, head, mask_id, vocab_size, autocast, objective.shift)
    return NetworkDenoiser(encoder, head, mask_id, vocab_size, autocast)
