"""The sampler's ``kv_cache`` axis: keys and values reused between steps (dKV-Cache, Ma et al.
2025; Fast-dLLM's block cache), so a network call computes only the positions that changed.

A position's keys and values (every layer) are kept from the last call that computed them,
with the token it had then. A *decided* position (committed or known) still holding that token
reuses them; masked positions, positions decided since that call (their kept keys are the
mask's: dKV-Cache's delay) and the positions whose features the step reads are computed.
Attention is bidirectional, so a reused key is the one its position had in an older context:
approximate. A row's call is a *full pass* (nothing reused) every ``refresh`` steps and when a
semi-AR block completes, so ``refresh=1`` is the exact sampler (up to float rounding).
"""

from __future__ import annotations

import torch
from torch import Tensor

from d3lm.params import PositiveInt
from d3lm.registry import KV_CACHES


class KVRows:
    """One cohort's kept keys and values: the denoiser's ``kv`` (one row per sequence, opaque
    here), the token each position had when they were computed (-1: never), and each row's
    step of its last full pass."""

    def __init__(self, ids: Tensor, mask_id: int, refresh: int) -> None:
        self.mask_id, self.refresh = mask_id, refresh
        self.kv: Tensor | None = None
        self.stored = torch.full_like(ids, -1)
        self.last_full = torch.full((len(ids),), -refresh, dtype=torch.long, device=ids.device)

    def reuse(self, ids: Tensor, rows: Tensor, at: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """For a call at ``step`` of ``rows`` (B,) that reads features at ``at`` (R, L): the
        positions (R, L) whose keys and values are reused, and which rows (R,) are full."""
        full = step - self.last_full[rows] >= self.refresh
        now = ids[rows]
        reuse = (now != self.mask_id) & (self.stored[rows] == now) & ~at & ~full[:, None]
        return reuse, full

    def take(self, rows: Tensor) -> Tensor | None:
        """The kept ``kv`` of ``rows`` (itself when that is every row: updated in place)."""
        if self.kv is None or bool(rows.all()):
            return self.kv
        return self.kv[rows]

    def update(self, ids: Tensor, rows: Tensor, full: Tensor, kv: Tensor, step: int) -> None:
        """Keep the ``kv`` a call at ``step`` returned for ``rows``; ``full``: its full rows."""
        if self.kv is None:
            self.kv = kv if bool(rows.all()) else kv.new_zeros((len(self.stored), *kv.shape[1:]))
        if kv is not self.kv:
            self.kv[rows] = kv
        self.stored[rows] = ids[rows]
        self.last_full[rows] = torch.where(full, step, self.last_full[rows])

    def expire(self) -> None:
        """Every row's next call is a full pass (a block completed)."""
        self.last_full.fill_(-self.refresh)


class KVCache:
    """An axis: ``rows(ids, mask_id)`` is one cohort's :class:`KVRows`, or None (nothing kept).
    ``reuses``: whether it ever reuses (it needs a denoiser with ``features_kv`` then)."""

    reuses = False

    def rows(self, ids: Tensor, mask_id: int) -> KVRows | None:
        raise NotImplementedError


@KV_CACHES.register("none")
class NoKVCache(KVCache):
    """Nothing reused: every network call computes every position (exact)."""

    def rows(self, ids: Tensor, mask_id: int) -> KVRows | None:
        return None


@KV_CACHES.register("dkv", examples=[{}, {"refresh": 1}, {"refresh": 3}])
class DelayedKV(KVCache):
    """Keys and values of decided positions reused (one step late), all recomputed every
    ``refresh`` steps and when a block completes (dKV-Cache-Decode; approximate)."""

    reuses = True

    def __init__(self, refresh: PositiveInt = 4) -> None:
        self.refresh = refresh

    def rows(self, ids: Tensor, mask_id: int) -> KVRows | None:
        return KVRows(ids, mask_id, self.refresh)
