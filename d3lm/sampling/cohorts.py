"""Cohorts: the batches of a sampler in flight, their network calls merged into one.

A cohort (one batch's step loop) is a generator that yields its network requests and is sent
the features. ``refill`` keeps several cohorts in flight and answers all their waiting requests
with one ``features`` call, starting new cohorts while that call is short of ``batch_size``
rows. ``Features`` is one cohort's view of the network: its feature cache, its kept keys and
values (``kvcache``) and its counts of calls.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from d3lm.sampling.denoiser import Denoiser, KVDenoiser
from d3lm.sampling.kvcache import KVRows


@dataclass
class Request:
    """One cohort's network call: ``ids`` (R, L) of the rows that need it and ``at`` (R, L), the
    positions wanted (features (N, H)); None: every position (features (R, L, H)).

    With kept keys and values, ``reuse`` (R, L) marks the positions that take theirs from ``kv``
    (the rows' kept ones; None before the first call), and the answer replaces ``kv`` with the
    updated ones (``KVDenoiser.features_kv``)."""

    ids: Tensor
    at: Tensor | None
    reuse: Tensor | None = None
    kv: Tensor | None = None


#: What a cohort returns: ids (B, L), nfe (B,), full passes (B,), trace (B, L).
Result = tuple[Tensor, Tensor, Tensor, Tensor]
#: A cohort yields requests, is sent their features and returns its result.
Cohort = Generator[Request, Tensor, Result]


def merged_features(den: Denoiser, requests: list[Request]) -> list[Tensor]:
    """One ``features`` call for all ``requests`` (ids concatenated), split back per request.

    Every cohort of a sampler asks for the same kind (``at`` or every position), so the
    requests of a tick always merge."""
    ids = torch.cat([r.ids for r in requests])
    if requests[0].at is None:
        return list(den.features(ids).split([len(r.ids) for r in requests]))
    at = [r.at for r in requests if r.at is not None]
    sizes = [int(a.sum()) for a in at]
    if requests[0].reuse is None:
        return list(den.features(ids, at=torch.cat(at)).split(sizes))
    assert isinstance(den, KVDenoiser)
    reuse = torch.cat([r.reuse for r in requests if r.reuse is not None])
    feats, kv = den.features_kv(ids, torch.cat(at), _merged_kv(requests), reuse)
    for request, part in zip(requests, kv.split([len(r.ids) for r in requests]), strict=True):
        request.kv = part if len(requests) > 1 else kv
    return list(feats.split(sizes))


def _merged_kv(requests: list[Request]) -> Tensor | None:
    """The requests' kept keys and values as one tensor (zeros for rows with none yet, which
    reuse nothing); a single request's own tensor, so the call updates it in place."""
    kept = [r.kv for r in requests if r.kv is not None]
    if not kept or len(requests) == 1:
        return kept[0] if kept else None
    rows = [
        r.kv if r.kv is not None else kept[0].new_zeros((len(r.ids), *kept[0].shape[1:]))
        for r in requests
    ]
    return torch.cat(rows)


def refill(
    den: Denoiser, cohorts: Iterator[Cohort], batch_size: int
) -> Iterator[tuple[int, Result]]:
    """Run ``cohorts`` with their requests merged; yields (cohort number, result) as each ends.

    Each tick, the requests of every waiting cohort go into one network call; while they hold
    fewer than ``batch_size`` rows, the next cohort starts and joins the tick, so the call stays
    full until the queue is empty. Exact: a row's features do not depend on the other rows.
    """
    waiting: dict[int, tuple[Cohort, Request]] = {}
    queue = enumerate(cohorts)

    def advance(k: int, cohort: Cohort, feats: Tensor | None) -> Iterator[tuple[int, Result]]:
        try:
            waiting[k] = (cohort, next(cohort) if feats is None else cohort.send(feats))
        except StopIteration as done:
            yield k, done.value

    while True:
        while sum(len(request.ids) for _, request in waiting.values()) < batch_size:
            new = next(queue, None)
            if new is None:
                break
            yield from advance(*new, None)
        if not waiting:
            return
        tick = list(waiting.items())
        waiting.clear()
        answers = merged_features(den, [request for _, (_, request) in tick])
        for (k, (cohort, _)), feats in zip(tick, answers, strict=True):
            yield from advance(k, cohort, feats)


class Features:
    """One cohort's features and network evaluations (NFE: one per sequence per call; ``full``:
    those that computed every position, i.e. all of them unless ``kv`` reuses keys and values).

    With ``cache``, a sequence's feature at a position stays valid until the sequence changes
    (commit or remask; exact because the denoiser is not time-conditioned), and a sequence is
    re-run only when a position it needs is not valid. Without it, every sequence is re-run
    every step (the straightforward baseline). ``sparse``: the network computes only the
    positions asked for (its last block runs there alone), else every position.
    """

    def __init__(
        self, den: Denoiser, ids: Tensor, cache: bool, sparse: bool, kv: KVRows | None = None
    ) -> None:
        if cache and den.time_conditioned:
            raise ValueError("the feature cache needs a denoiser that is not time-conditioned")
        self.cache, self.sparse, self.kv = cache, sparse, kv
        self.feats: Tensor | None = None
        self.valid = torch.zeros_like(ids, dtype=torch.bool)
        self.nfe = torch.zeros(len(ids), dtype=torch.long)
        self.full = torch.zeros(len(ids), dtype=torch.long)

    def get(
        self, ids: Tensor, rows: Tensor, where: Tensor, step: int
    ) -> Generator[Request, Tensor, Tensor]:
        """Features (B, L, H), valid at ``where`` (B, L) in ``rows`` (B,) (elsewhere: stale or
        zero, and the step must not depend on them)."""
        need = rows & (where & ~self.valid).any(1) if self.cache else torch.ones_like(rows)
        if need.any():
            feats = yield from self._call(ids, need, where if self.sparse else None, step)
            if self.feats is None:
                self.feats = feats.new_zeros((*ids.shape, feats.shape[-1]))
            fresh = need[:, None] & where  # without ``sparse``, ``where`` is every position
            self.feats[fresh] = feats.flatten(0, -2)
            self.valid |= fresh
        assert self.feats is not None
        return self.feats

    def at(self, ids: Tensor, where: Tensor, step: int) -> Generator[Request, Tensor, Tensor]:
        """Features (N, H) at ``where`` (B, L) only, from rows with something there (every row
        without the cache). Never cached: each of those rows commits right after, so its
        features would be stale by the next call."""
        need = where.any(1) if self.cache else torch.ones_like(where[:, 0])
        return (yield from self._call(ids, need, where, step))

    def _call(
        self, ids: Tensor, need: Tensor, at: Tensor | None, step: int
    ) -> Generator[Request, Tensor, Tensor]:
        """The network for rows ``need`` at ``at`` (None: everywhere), reusing kept keys and
        values where ``kv`` allows."""
        self.nfe += need.long().cpu()
        if self.kv is None:
            self.full += need.long().cpu()
            return (yield Request(ids[need], None if at is None else at[need]))
        assert at is not None, "kept keys need the sparse loop (Sampler refuses the other)"
        reuse, full = self.kv.reuse(ids, need, at[need], step)
        request = Request(ids[need], at[need], reuse, self.kv.take(need))
        feats = yield request
        assert request.kv is not None
        self.kv.update(ids, need, full, request.kv, step)
        self.full[need.cpu()] += full.long().cpu()
        return feats

    def expire(self) -> None:
        """Every row's next call computes every position (a semi-AR block completed)."""
        if self.kv is not None:
            self.kv.expire()

    def touched(self, rows: Tensor) -> None:
        """Rows that changed: none of their features is valid any more."""
        self.valid &= ~rows[:, None]
