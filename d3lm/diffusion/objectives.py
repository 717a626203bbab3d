"""Training objectives on the shared backbone."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from d3lm.diffusion.schedules import Linear, NoiseSchedule
from d3lm.registry import OBJECTIVES, takes_keyword

#: ``logits = model(ids, attention_mask)`` with logits of shape (B, L, vocab); a model that also
#: takes ``at`` (B, L) bool returns the (N, vocab) logits at those positions only, in row-major
#: order (``DiffusionLM``: its last block and LM head then run there alone).
Denoiser = Callable[..., Tensor]

# Every objective declares how the network is run and read, so that the LightningModule and the
# sampler's denoiser follow the objective without knowing its name:
#   ``causal``: attention lets position i see positions <= i only;
#   ``shift``: the logits at position i score the token at position i + shift.
# ``stats["nll_nats"]`` is a likelihood bound (or the exact NLL), reported as bits/nt; an objective
# whose loss bounds no likelihood (MLM) omits it and offers ``bound``, an objective whose
# ``nll_nats`` validation reports for the same network instead. One that draws replacement tokens
# (MLM) has ``set_real_tokens(real)``, which the LightningModule calls with the tokenizer's
# non-special tokens.


def token_ce(logits: Tensor, ids: Tensor, scored: Tensor, never_id: int) -> Tensor:
    """Sum of CE (nats) of ``ids`` under ``logits`` over the ``scored`` positions, (B,).

    Token ``never_id`` (the mask) is never a prediction: its logit is -inf, as in sampling.
    """
    never = torch.arange(logits.shape[-1], device=logits.device) == never_id
    logits = logits.float().masked_fill(never, float("-inf"))
    ce = F.cross_entropy(logits.flatten(0, -2), ids.flatten(), reduction="none")
    # where (not a product) so unscored positions get exactly zero loss and zero gradient, and
    # no host sync is needed, unlike boolean indexing.
    return torch.where(scored, ce.view_as(ids), 0.0).sum(dim=-1)


def scored_ce(
    model: Denoiser,
    noisy: Tensor,
    attention_mask: Tensor | None,
    ids: Tensor,
    scored: Tensor,
    never_id: int,
) -> Tensor:
    """Sum of CE (nats) of ``ids`` over the ``scored`` positions of each sequence, (B,), with the
    model's logits computed at those positions only when it can (``at``).

    The loss reads nothing else, so the result and its gradients are those of the full logits;
    the LM head (a quarter of a ``tiny`` step) and the last block's feed-forward then run on
    the scored half (diffusion) or 15 % (MLM) of the tokens.
    """
    if not takes_keyword(model, "at"):
        return token_ce(model(noisy, attention_mask), ids, scored, never_id)
    logits = model(noisy, attention_mask, at=scored)
    rows = scored.nonzero(as_tuple=True)[0]
    never = torch.arange(logits.shape[-1], device=logits.device) == never_id
    ce = F.cross_entropy(
        logits.float().masked_fill(never, float("-inf")), ids[scored], reduction="none"
    )
    return torch.zeros(ids.shape[0], dtype=ce.dtype, device=ce.device).index_add(0, rows, ce)


@OBJECTIVES.register("masked_diffusion")
class MaskedDiffusion:
    """Absorbing-state diffusion ELBO (MDLM, LLaDA): CE on masked tokens weighted by weight(t).

    SUBS parameterisation: the mask token is never a prediction (its logit is -inf), and clean
    tokens carry over, so only masked positions contribute. The per-sequence estimate
    ``weight(t) * sum_masked CE`` is an unbiased (up to t >= t_eps) bound on -log p(x) in nats.
    """

    causal = False
    shift = 0

    def __init__(
        self, schedule: NoiseSchedule, mask_id: int, t_eps: float = 1e-3, antithetic: bool = True
    ) -> None:
        if not 0.0 < t_eps < 1.0:
            raise ValueError(f"t_eps must lie in (0, 1), got {t_eps}")
        self.schedule = schedule
        self.mask_id = mask_id
        self.t_eps = t_eps
        self.antithetic = antithetic

    def sample_t(
        self,
        batch: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """t (B,) uniform on [t_eps, 1)."""
        return self.t_eps + (1.0 - self.t_eps) * self.uniforms(batch, generator, device)

    def uniforms(
        self,
        batch: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """u (B,) on [0, 1); antithetic draws are stratified, u_i = (u + i/B) mod 1, which
        lowers the variance of the batch loss at no cost."""
        if not self.antithetic:
            return torch.rand(batch, generator=generator, device=device)
        u = torch.rand(1, generator=generator, device=device)
        return (u + torch.arange(batch, device=device) / batch) % 1.0

    def noise(
        self, ids: Tensor, maskable: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(noisy ids, masked, per-sequence ELBO weight (B,)) for one training draw."""
        t = self.sample_t(ids.shape[0], generator, ids.device)
        noisy, masked = self.corrupt(ids, t, maskable, generator)
        return noisy, masked, self.schedule.weight(t.float())

    def corrupt(
        self, ids: Tensor, t: Tensor, maskable: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Mask each maskable token independently with probability 1 - alpha(t_b).

        Returns (noisy ids, masked) where ``masked`` is True where ``mask_id`` was put.
        """
        p_mask = (1.0 - self.schedule.alpha(t)).unsqueeze(-1)
        draw = torch.rand(ids.shape, generator=generator, device=ids.device)
        masked = (draw < p_mask) & maskable
        return ids.masked_fill(masked, self.mask_id), masked

    def weighted_loss(self, logits: Tensor, ids: Tensor, masked: Tensor, t: Tensor) -> Tensor:
        """weight(t_b) * sum of CE (nats) over the masked positions of each sequence, (B,)."""
        return self.schedule.weight(t.float()) * self.masked_ce(logits, ids, masked)

    def masked_ce(self, logits: Tensor, ids: Tensor, masked: Tensor) -> Tensor:
        """Sum of CE (nats) over the masked positions of each sequence, (B,)."""
        return token_ce(logits, ids, masked, self.mask_id)

    def loss(
        self,
        model: Denoiser,
        ids: Tensor,
        maskable: Tensor,
        attention_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Batch loss = sum of per-sequence bounds / maskable tokens in the batch, and stats.

        ``stats["nll_nats"]`` is the batch sum of the per-sequence bounds: divide the epoch total
        by nucleotides and ln 2 for bits per nucleotide. Pads (``attention_mask`` False) are
        never masked.
        """
        if attention_mask is not None:
            maskable = maskable & attention_mask
        noisy, masked, weight = self.noise(ids, maskable, generator)
        per_seq = weight * scored_ce(model, noisy, attention_mask, ids, masked, self.mask_id)
        n_maskable = maskable.sum()
        loss = per_seq.sum() / n_maskable.clamp_min(1)
        stats = {
            "nll_nats": per_seq.detach().sum(),
            "n_maskable": n_maskable,
            "masked_fraction": masked.sum() / n_maskable.clamp_min(1),
        }
        return loss, stats


@OBJECTIVES.register("masked_diffusion_count")
class MaskedDiffusionByCount(MaskedDiffusion):
    """The same ELBO, estimated by masking a uniform *number* of tokens (RADD, Ou et al. 2024).

    For absorbing diffusion the bound does not depend on the schedule and equals
    E_{m ~ U{1..n}} [(n / m) sum over m random masked tokens of CE] (n maskable tokens), the
    any-order autoregressive form. Its per-token weight n / m is at most n, where the
    continuous form's weight(t) reaches 1 / t_eps; the rare huge-weight draws of the latter
    dominate small-batch gradients, so this estimator learns faster on a CPU-sized batch. The
    schedule is not used; ``t_eps`` does not apply.
    """

    def noise(
        self, ids: Tensor, maskable: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        n = maskable.sum(-1)
        u = self.uniforms(ids.shape[0], generator, ids.device)
        m = torch.minimum((u * n).floor().long() + 1, n)  # uniform on 1..n (0 when n = 0)
        scores = torch.rand(ids.shape, generator=generator, device=ids.device)
        rank = scores.masked_fill(~maskable, 2.0).argsort(-1).argsort(-1)
        masked = (rank < m.unsqueeze(-1)) & maskable
        weight = n / m.clamp_min(1)
        return ids.masked_fill(masked, self.mask_id), masked, weight.float()


@OBJECTIVES.register("autoregressive")
class Autoregressive:
    """Causal next-token cross-entropy on the same backbone and token ids (the AR baseline).

    ``<cls>`` is the beginning-of-sequence context; every other real token is predicted from the
    tokens before it (the hidden state at i - 1, causal attention), pads are ignored and the mask
    token is never predicted. ``stats["nll_nats"]`` is the *exact* -log p(x) = -sum_i
    log p(x_i | x_<i), so ``val/bpn`` compares directly with the diffusion objectives', which is
    an upper bound (ELBO) on the diffusion model's NLL: an AR number below a diffusion number
    may partly be the bound's gap. ``schedule`` is not used: nothing is noised.
    """

    causal = True
    shift = 1

    def __init__(self, mask_id: int, schedule: NoiseSchedule | None = None) -> None:
        self.mask_id = mask_id

    def loss(
        self,
        model: Denoiser,
        ids: Tensor,
        maskable: Tensor,
        attention_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean next-token CE over the predicted tokens of the batch, and stats.

        ``maskable`` marks the tokens to predict (not ``<cls>``, not pads); ``model`` must run
        with causal attention (``causal``). ``generator`` is unused: the loss is deterministic.
        """
        scored = maskable if attention_mask is None else maskable & attention_mask
        scored = scored[:, self.shift :]
        logits = model(ids, attention_mask)[:, : ids.shape[1] - self.shift]
        per_seq = token_ce(logits, ids[:, self.shift :], scored, self.mask_id)
        n_scored = scored.sum()
        loss = per_seq.sum() / n_scored.clamp_min(1)
        return loss, {"nll_nats": per_seq.detach().sum(), "n_maskable": n_scored}


@OBJECTIVES.register("mlm")
class MaskedLanguageModel:
    """NT v2's pretraining (BERT's masked LM): 15 % of real tokens selected, 80/10/10 corrupted.

    Each sequence selects exactly round(rate * n) of its n real tokens (at least one), uniformly
    without replacement, as BERT's data pipeline does: a per-token coin would leave some short
    sequences with nothing to predict and make the loss's denominator random. Each selected
    token independently becomes the mask (``mask_fraction``), a token drawn uniformly from the
    tokenizer's real tokens (``random_fraction``; never a special one) or stays as it is. The loss
    is the mean CE over the selected positions (the mask token is never a prediction).

    The loss bounds no likelihood, so ``stats`` has no ``nll_nats``: validation reports the
    count-form diffusion ELBO of the same network (``bound``) as ``val/bpn``, comparable with
    the diffusion runs', and this loss as ``val/loss``. ``schedule`` is not used.
    """

    causal = False
    shift = 0

    def __init__(
        self,
        mask_id: int,
        schedule: NoiseSchedule | None = None,
        rate: float = 0.15,
        mask_fraction: float = 0.8,
        random_fraction: float = 0.1,
    ) -> None:
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"rate must lie in (0, 1], got {rate}")
        if min(mask_fraction, random_fraction) < 0 or mask_fraction + random_fraction > 1:
            raise ValueError(
                "mask_fraction and random_fraction must be >= 0 with a sum <= 1, got "
                f"{mask_fraction} and {random_fraction}"
            )
        self.mask_id = mask_id
        self.rate = rate
        self.mask_fraction = mask_fraction
        self.random_fraction = random_fraction
        self.bound = MaskedDiffusionByCount(schedule or Linear(), mask_id)
        self.real_ids: Tensor | None = None

    def set_real_tokens(self, real: Tensor) -> None:
        """The tokens a random replacement is drawn from: ``real`` (vocab,) bool."""
        if not real.any():
            raise ValueError("the vocabulary has no real (non-special) token to draw")
        self.real_ids = real.nonzero().flatten()

    def corrupt(
        self, ids: Tensor, maskable: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """(corrupted ids, selected): the selected positions are those the loss scores."""
        if self.real_ids is None:
            raise RuntimeError("mlm: call set_real_tokens(real) before drawing random tokens")
        n = maskable.sum(-1)
        count = torch.where(n > 0, (self.rate * n + 0.5).floor().long().clamp_min(1), 0)
        scores = torch.rand(ids.shape, generator=generator, device=ids.device)
        rank = scores.masked_fill(~maskable, 2.0).argsort(-1).argsort(-1)
        selected = (rank < count.unsqueeze(-1)) & maskable
        action = torch.rand(ids.shape, generator=generator, device=ids.device)
        real_ids = self.real_ids.to(ids.device)
        draw = torch.randint(len(real_ids), ids.shape, generator=generator, device=ids.device)
        masked = selected & (action < self.mask_fraction)
        randomised = selected & ~masked & (action < self.mask_fraction + self.random_fraction)
        noisy = torch.where(randomised, real_ids[draw], ids).masked_fill(masked, self.mask_id)
        return noisy, selected

    def loss(
        self,
        model: Denoiser,
        ids: Tensor,
        maskable: Tensor,
        attention_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean CE over the selected positions of the batch, and stats (no ``nll_nats``: see
        the class). Pads (``attention_mask`` False) are never selected."""
        if attention_mask is not None:
            maskable = maskable & attention_mask
        noisy, selected = self.corrupt(ids, maskable, generator)
        ce = scored_ce(model, noisy, attention_mask, ids, selected, self.mask_id)
        n_selected = selected.sum()
        n_maskable = maskable.sum()
        stats = {
            "n_maskable": n_maskable,
            "n_selected": n_selected,
            "masked_fraction": n_selected / n_maskable.clamp_min(1),
        }
        return ce.sum() / n_selected.clamp_min(1), stats
