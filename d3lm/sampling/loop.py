"""``Sampler``: the one step loop every preset runs, composed from registered axes.

The loop of one batch (a *cohort*, :mod:`d3lm.sampling.cohorts`) is a generator that yields its
network requests and is sent the features, so several batches in flight share one network call:
with ancestral counts, ReMDM or the feature cache, rows need the network at different steps,
and static batches would run most calls on a fraction of the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from d3lm.errors import D3lmError
from d3lm.params import PositiveInt
from d3lm.registry import COMMIT_COUNTS, KV_CACHES, REMASKERS, SCHEDULES, UNMASK_ORDERS
from d3lm.sampling import rng
from d3lm.sampling.base import StepContext
from d3lm.sampling.cohorts import Cohort, Features, Request, Result, refill
from d3lm.sampling.denoiser import Denoiser


@dataclass
class StepEvent:
    """What a hook sees after each step (read-only views; ``index`` = global sequence ids)."""

    step: int
    index: Tensor  #: (B,)
    ids: Tensor  #: (B, L)
    committed: Tensor  #: (B, L) committed at this step
    remasked: Tensor  #: (B, L) masked again at this step


Hook = Callable[[StepEvent], None]


@dataclass
class RunStats:
    """Per sequence of the last ``sample``/``infill`` call: network evaluations, the step at
    which each position was (last) committed (-1: known, never sampled), and how many of the
    evaluations were full passes (all, unless a ``kv_cache`` reused keys in the others)."""

    nfe: Tensor  #: (n,)
    trace: Tensor  #: (n, L)
    full: Tensor  #: (n,)


def _alpha_fn(schedule: Any) -> Callable[[float], float]:
    """Accept a schedule name, a config ``{name, params}``, any object with ``.alpha(t)``, or a
    callable ``alpha(t)``; None is the linear schedule."""
    if schedule is None:
        return lambda t: 1.0 - t
    if isinstance(schedule, str):
        schedule = SCHEDULES.build(schedule)
    elif isinstance(schedule, Mapping):
        schedule = SCHEDULES.build(schedule["name"], schedule.get("params"))
    fn = schedule.alpha if hasattr(schedule, "alpha") else schedule
    return lambda t: float(fn(torch.tensor(t, dtype=torch.float64)))


def _axis(registry: Any, spec: Any, params: Mapping[str, Any] | None) -> Any:
    """Build an axis from its name (config) or take an instance (code)."""
    return registry.build(spec, params) if isinstance(spec, str) else spec


def _name(axis: Any) -> str:
    """An axis as a config names it, or its class for one given as an instance."""
    return axis if isinstance(axis, str) else type(axis).__name__


def _top_set(scores: Tensor, candidates: Tensor, k: Tensor) -> Tensor:
    """The ``k[b]`` highest-scoring candidates of each row (stable: ties go to the left)."""
    s = scores.masked_fill(~candidates, float("-inf"))
    order = torch.sort(s, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(s.shape[1], device=s.device).expand_as(order))
    return (rank < k[:, None]) & candidates


def _inverse_cdf(probs: Tensor, u: Tensor) -> Tensor:
    """One categorical draw per row from one uniform (so a draw costs one number, not V)."""
    cdf = probs.cumsum(-1)
    idx = torch.searchsorted(cdf, (u * cdf[..., -1]).unsqueeze(-1), right=True).squeeze(-1)
    idx = idx.clamp(max=probs.shape[-1] - 1)
    # u * total can round up to total: then fall back to the top token, never a zero one
    zero = probs.gather(-1, idx.unsqueeze(-1)).squeeze(-1) == 0
    return torch.where(zero, probs.argmax(-1), idx) if zero.any() else idx


class Sampler:
    """Masked-diffusion sampler: all-mask (or partly known) ids are unmasked over ``steps``.

    Each step: the remasker picks committed tokens to re-mask, the count says how many masked
    positions to commit, the order says which, and those get tokens drawn (float64) from the
    denoiser's processed distribution. ``block_length`` splits positions into semi-AR blocks that
    share the steps. ``cache`` keeps each sequence's features per position until the sequence
    changes, so the network runs only for sequences that need a position not yet computed;
    ``sparse_head`` runs the network's last block only where the step needs it: at the eligible
    (and, for replanning orders, committed) positions for orders and counts that read logits,
    and, for the others, with the head, softmax and draws, only at the positions chosen before
    the call. Both off = the straightforward loop (benchmarks): the whole network and the head
    at every position of every sequence, every step. ``kv_cache`` (an axis,
    :mod:`d3lm.sampling.kvcache`) reuses the keys and values of decided positions between
    calls: approximate, unlike the two above; ``none`` (the default) reuses nothing.
    """

    def __init__(
        self,
        order: Any = "random",
        count: Any = "fixed",
        remasker: Any = "none",
        *,
        order_params: Mapping[str, Any] | None = None,
        count_params: Mapping[str, Any] | None = None,
        remasker_params: Mapping[str, Any] | None = None,
        kv_cache: Any = "none",
        kv_cache_params: Mapping[str, Any] | None = None,
        steps: int = 50,
        temperature: float = 1.0,
        top_k: PositiveInt | None = None,
        top_p: float | None = None,
        block_length: PositiveInt | None = None,
        schedule: Any = None,
        cache: bool = True,
        sparse_head: bool = True,
    ) -> None:
        if steps < 1 or temperature <= 0:
            raise ValueError(f"need steps >= 1 and temperature > 0, got {steps}, {temperature}")
        if top_p is not None and not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.order = _axis(UNMASK_ORDERS, order, order_params)
        self.count = _axis(COMMIT_COUNTS, count, count_params)
        self.remasker = _axis(REMASKERS, remasker, remasker_params)
        self.kv_cache = _axis(KV_CACHES, kv_cache, kv_cache_params)
        self._kv_cache_name = _name(kv_cache)
        if self.kv_cache.reuses and not sparse_head:
            raise D3lmError(
                f"kv_cache {self._kv_cache_name!r} cannot run with sparse_head=False: the "
                "straightforward loop computes every position at every step"
            )
        self.steps, self.temperature = steps, temperature
        self.top_k, self.top_p = top_k, top_p
        self.block_length = block_length
        self.alpha = _alpha_fn(schedule)
        self.cache, self.sparse_head = cache, sparse_head
        self.last_run: RunStats | None = None

    # ----------------------------------------------------------------------------- public API

    def sample(
        self,
        denoiser: Denoiser,
        n: int,
        layout: Tensor,
        *,
        seed: int,
        batch_size: int = 64,
        hook: Hook | None = None,
        progress: bool = False,
        first_index: int = 0,
    ) -> Tensor:
        """``n`` sequences (n, L) legal under ``layout`` (L, W), W >= the logits' width V."""
        ids = torch.full((n, layout.shape[0]), denoiser.mask_id, device=layout.device)
        known = torch.zeros_like(ids, dtype=torch.bool)
        return self.infill(
            denoiser,
            ids,
            known,
            layout,
            seed=seed,
            batch_size=batch_size,
            hook=hook,
            progress=progress,
            first_index=first_index,
        )

    def infill(
        self,
        denoiser: Denoiser,
        ids: Tensor,
        known: Tensor,
        layout: Tensor,
        *,
        seed: int,
        batch_size: int = 64,
        hook: Hook | None = None,
        progress: bool = False,
        first_index: int = 0,
    ) -> Tensor:
        """Fill the positions of ``ids`` (n, L) where ``known`` is False; known ones never change.

        Positions whose layout allows exactly one token are known too (e.g. ``<cls>``).
        ``layout`` (L, W) may be wider than the denoiser's vocabulary V (a conditioning's
        layout): ids >= V (condition tokens) can only be known, never drawn.
        Sequences run in cohorts of ``batch_size`` whose network calls are merged
        (``cohorts.refill``), so hook events of cohorts in flight interleave. ``first_index`` is
        the global id of the first sequence (random draws and hook ``index`` follow it), so a
        slice of a larger job (a worker's) draws exactly what the whole job draws there.
        ``progress`` shows
        sequences done / total on stderr when it is a terminal.
        """
        layout = layout.to(torch.bool)
        forced = layout.sum(-1) == 1
        known = known.to(layout.device) | forced
        ids = torch.where(forced, layout.long().argmax(-1), ids.to(layout.device))
        legal = layout.gather(1, ids.clamp(0, layout.shape[1] - 1).T).T
        bad = (known & ~legal).nonzero()
        if len(bad):
            raise ValueError(
                f"known token not allowed by layout at (sequence, position) "
                f"{tuple(bad[0].tolist())}"
            )
        drawable = layout[:, : denoiser.vocab_size].any(-1)
        undrawable = (~known & ~drawable).nonzero()
        if len(undrawable):
            raise ValueError(
                f"position {int(undrawable[0, 1])} is to be drawn but its layout allows no id "
                f"below the vocabulary's {denoiser.vocab_size} (a condition token must be known)"
            )
        ids = ids.masked_fill(~known, denoiser.mask_id)
        if self.kv_cache.reuses and not getattr(denoiser, "kv_capable", False):
            raise D3lmError(
                f"kv_cache {self._kv_cache_name!r} needs a denoiser that reuses keys and "
                f"values (features_kv); {type(denoiser).__name__} has none"
            )
        n = ids.shape[0]
        cohorts = (
            self._cohort(
                denoiser,
                ids[start : start + batch_size].clone(),
                layout,
                torch.arange(start, min(start + batch_size, n), device=ids.device) + first_index,
                seed,
                hook,
            )
            for start in range(0, n, batch_size)
        )
        results: dict[int, Result] = {}
        bar = tqdm(total=n, desc="sample", unit="seq", disable=None if progress else True)
        for k, result in refill(denoiser, cohorts, batch_size):
            results[k] = result
            bar.update(len(result[0]))
        bar.close()
        done = [results[k] for k in sorted(results)]
        ids, nfe, full, trace = (torch.cat(part) for part in zip(*done, strict=True))
        self.last_run = RunStats(nfe, trace, full)
        return ids

    # ----------------------------------------------------------------------------- internals

    def _blocks(self, length: int) -> list[tuple[int, int, int]]:
        """(start, end, steps) per semi-AR block; earlier blocks get the leftover steps."""
        size = self.block_length or length
        starts = range(0, length, size)
        if self.steps < len(starts):
            raise ValueError(f"{self.steps} steps cannot cover {len(starts)} blocks")
        per, extra = divmod(self.steps, len(starts))
        return [(s, min(s + size, length), per + (i < extra)) for i, s in enumerate(starts)]

    def _probs(self, logits: Tensor, allowed: Tensor) -> Tensor:
        """Legal tokens only, temperature, top-k, top-p; softmax in float64. ``allowed`` may be
        wider than the logits: the ids past them (condition tokens) are never drawn."""
        allowed = allowed[..., : logits.shape[-1]]
        x = logits.double().masked_fill(~allowed, float("-inf")) / self.temperature
        if self.top_k is not None and self.top_k < x.shape[-1]:
            kth = x.topk(self.top_k, dim=-1).values[..., -1:]
            x = x.masked_fill(x < kth, float("-inf"))
        p = torch.softmax(x, dim=-1)
        if self.top_p is not None and self.top_p < 1:
            sp, si = p.sort(dim=-1, descending=True)
            drop = sp.cumsum(-1) - sp >= self.top_p  # keep the smallest prefix reaching top_p
            p = p.scatter(-1, si, sp.masked_fill(drop, 0.0))
            p = p / p.sum(-1, keepdim=True)
        return p

    def _cohort(
        self,
        den: Denoiser,
        ids: Tensor,
        layout: Tensor,
        index: Tensor,
        seed: int,
        hook: Hook | None,
    ) -> Cohort:
        """The step loop of one cohort (global sequence ids ``index``): yields each network
        request and is sent its features, so ``cohorts.refill`` can merge several cohorts' calls."""
        b, length = ids.shape
        free = ids == den.mask_id
        kv = self.kv_cache.rows(ids, den.mask_id)
        state = Features(den, ids, self.cache, self.sparse_head, kv)
        confidence = torch.zeros(b, length, dtype=torch.float64, device=ids.device)
        trace = torch.full_like(ids, -1)
        keys = rng.row_keys(seed, index)
        logits_first = not self.sparse_head or self.order.needs_logits or self.count.needs_logits
        step0 = 0
        for start, end, n_steps in self._blocks(length):
            if start > 0:
                state.expire()  # the block before is complete: refresh any kept keys
            window = torch.zeros(length, dtype=torch.bool, device=ids.device)
            window[start:end] = True
            for j in range(n_steps):
                masked = ids == den.mask_id
                eligible = masked & window
                if self.cache and not eligible.any():
                    break  # nothing left in this block: the rest of its steps change nothing
                t, s = 1 - j / n_steps, 1 - (j + 1) / n_steps
                ctx = StepContext(
                    step=step0 + j,
                    steps_left=n_steps - j,
                    alpha_t=self.alpha(t),
                    alpha_s=self.alpha(s),
                    ids=ids,
                    masked=masked,
                    eligible=eligible,
                    committed=free & ~masked & window,
                    uniforms=rng.uniforms(keys, step0 + j, length),
                    confidence=confidence,
                    sigma=torch.zeros(b, dtype=torch.float64, device=ids.device),
                )
                remask = torch.zeros_like(masked)
                if j < n_steps - 1:  # the last step of a block only commits
                    remask, ctx.sigma = self.remasker(ctx)
                if logits_first:
                    step = yield from self._step_dense(den, ctx, state, layout)
                    commit, replanned, tokens, p_tok = step
                    remask |= replanned
                else:
                    commit, tokens, p_tok = yield from self._step_sparse(den, ctx, state, layout)
                ids = torch.where(commit, tokens, ids).masked_fill(remask, den.mask_id)
                confidence = torch.where(commit, p_tok, confidence)
                trace = torch.where(commit, step0 + j, trace).masked_fill(remask, -1)
                state.touched((commit | remask).any(1))
                if hook is not None:
                    hook(StepEvent(step0 + j, index, ids, commit, remask))
            step0 += n_steps
        return ids, state.nfe, state.full, trace

    def _step_dense(
        self, den: Denoiser, ctx: StepContext, state: Features, layout: Tensor
    ) -> Generator[Request, Tensor, tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Head and softmax first, then choose: for logit-reading axes, and the baseline (which
        evaluates every position, not only the eligible ones)."""
        where = ctx.eligible | ctx.committed if self.order.replans else ctx.eligible
        if not self.sparse_head:
            where = torch.ones_like(where)
        feats = yield from state.get(ctx.ids, ctx.eligible.any(1), where, ctx.step)
        r, c = ctx.at = where.nonzero(as_tuple=True)
        ctx.probs = self._probs(den.logits(feats[r, c]), layout[c])
        ctx.draws = _inverse_cdf(ctx.probs, ctx.stream(rng.TOKEN)[r, c])
        k = self.count(ctx)
        scores = self.order.scores(ctx)
        remask = torch.zeros_like(ctx.eligible)
        if self.order.replans:
            chosen = _top_set(scores, ctx.eligible | ctx.committed, k + ctx.committed.sum(1))
            remask = ctx.committed & ~chosen
            commit = chosen & ctx.eligible
        else:
            commit = _top_set(scores, ctx.eligible, k)
        tokens = torch.zeros_like(ctx.ids)
        tokens[r, c] = ctx.draws
        p_tok = ctx.scatter(ctx.probs.gather(-1, ctx.draws[:, None]).squeeze(-1), 0.0)
        return commit, remask, tokens, p_tok

    def _step_sparse(
        self, den: Denoiser, ctx: StepContext, state: Features, layout: Tensor
    ) -> Generator[Request, Tensor, tuple[Tensor, Tensor, Tensor]]:
        """Choose first, then head, softmax and draws only at the chosen positions."""
        commit = _top_set(self.order.scores(ctx), ctx.eligible, self.count(ctx))
        tokens = torch.zeros_like(ctx.ids)
        p_tok = torch.zeros_like(ctx.confidence)
        if commit.any() or not self.cache:
            r, c = commit.nonzero(as_tuple=True)
            feats = yield from state.at(ctx.ids, commit, ctx.step)
            probs = self._probs(den.logits(feats), layout[c])
            tok = _inverse_cdf(probs, ctx.stream(rng.TOKEN)[r, c])
            tokens[r, c] = tok
            p_tok[r, c] = probs.gather(-1, tok[:, None]).squeeze(-1)
        return commit, tokens, p_tok
