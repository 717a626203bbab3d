"""The axes a sampler is composed of, and the per-step state they read.

An *order* scores positions (higher commits sooner), a *count* says how many to commit this
step, a *remasker* picks committed tokens to mask again. Each is a tiny class registered by name
in ``d3lm.registry``; ``Sampler`` (``loop.py``) runs them in one shared step loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from d3lm.sampling import rng


@dataclass
class StepContext:
    """Everything an axis may read at one step of one batch (B sequences of L tokens).

    ``probs`` and ``draws`` are set only when some axis ``needs_logits``: the processed
    (temperature, top-k/p, legal-token) float64 distribution and the token each position would
    get if committed now, for the N positions ``at`` = (rows, cols) only (the eligible ones,
    plus committed ones for replanning orders), so the head never runs where nothing can
    change. ``scatter`` puts such per-position values back on the (B, L) grid.
    """

    step: int  #: global step index, 0-based
    steps_left: int  #: steps left in the current block, this one included
    alpha_t: float  #: clean probability now
    alpha_s: float  #: clean probability after this step
    ids: Tensor  #: (B, L) current tokens
    masked: Tensor  #: (B, L) still masked
    eligible: Tensor  #: (B, L) masked and inside the current block
    committed: Tensor  #: (B, L) committed by the sampler (not known) inside the current block
    uniforms: Tensor  #: (N_STREAMS, B, L) float64, see ``rng``
    confidence: Tensor  #: (B, L) float64 probability each committed token had when drawn
    sigma: Tensor  #: (B,) float64 expected remasking fraction this step (set by the remasker)
    at: tuple[Tensor, Tensor] | None = None  #: (rows, cols) of the N evaluated positions
    probs: Tensor | None = None  #: (N, V) float64
    draws: Tensor | None = None  #: (N,)

    def stream(self, which: int) -> Tensor:
        return self.uniforms[which]

    def scatter(self, values: Tensor, fill: float) -> Tensor:
        """(N,) values at the evaluated positions -> (B, L) float64, ``fill`` elsewhere."""
        assert self.at is not None
        out = torch.full(self.ids.shape, fill, dtype=torch.float64, device=self.ids.device)
        out[self.at] = values.double()
        return out


class UnmaskOrder:
    """Scores positions; the loop commits the top-``count`` eligible ones.

    ``needs_logits``: scores read ``ctx.probs`` (so the head runs before choosing).
    ``replans``: scores also rank committed positions, and committed ones that fall out of the
    top set are masked again (P2 path planning).
    """

    needs_logits = False
    replans = False

    def scores(self, ctx: StepContext) -> Tensor:
        raise NotImplementedError


class CommitCount:
    """Number of eligible positions to commit this step, per sequence, shape (B,)."""

    needs_logits = False

    def __call__(self, ctx: StepContext) -> Tensor:
        raise NotImplementedError


class Remasker:
    """Committed positions to mask again (B, L) and the expected fraction ``sigma`` (B,),
    which the ancestral count uses to keep the schedule's marginals."""

    def __call__(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


def gumbel(u: Tensor) -> Tensor:
    """Gumbel(0, 1) noise from uniforms (float64)."""
    return -torch.log(-torch.log(u.clamp_min(1e-300)))


def stream_scores(ctx: StepContext) -> Tensor:
    """The order stream's uniforms: a random ranking of positions."""
    return ctx.stream(rng.ORDER)
