"""Noise schedules (every registered one, with the examples it declares) and the masked-diffusion
objective."""

from __future__ import annotations

import math

import pytest
import torch
from registered import examples

from d3lm.diffusion import Linear, MaskedDiffusion, NoiseSchedule
from d3lm.registry import OBJECTIVES, SCHEDULES

MASK_ID = 2


@pytest.mark.parametrize("case", examples("schedule"))
def test_weight_is_minus_autograd_derivative_over_one_minus_alpha(case) -> None:
    schedule: NoiseSchedule = SCHEDULES.build(*case)
    t = torch.linspace(1e-3, 1.0, 101, dtype=torch.float64, requires_grad=True)
    alpha = schedule.alpha(t)
    (autograd_prime,) = torch.autograd.grad(alpha.sum(), t)
    t = t.detach()
    torch.testing.assert_close(schedule.alpha_prime(t), autograd_prime)
    torch.testing.assert_close(schedule.weight(t), -autograd_prime / (1 - alpha.detach()))
    assert (schedule.weight(t) > 0).all()
    # float32 in, float32 out, and still accurate where 1 - alpha(t) is tiny
    t32 = t.float()
    assert schedule.weight(t32).dtype == torch.float32
    torch.testing.assert_close(schedule.weight(t32), schedule.weight(t32.double()).float())


@pytest.mark.parametrize("case", examples("schedule"))
def test_boundary_values(case) -> None:
    schedule = SCHEDULES.build(*case)
    ends = schedule.alpha(torch.tensor([0.0, 1.0]))
    assert ends[0] == pytest.approx(1.0)
    assert ends[1] == pytest.approx(0.0, abs=1e-3)
    alpha = schedule.alpha(torch.linspace(0, 1, 50))
    assert (alpha.diff() < 0).all()  # strictly more masking as t grows


def test_known_weights() -> None:
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    torch.testing.assert_close(SCHEDULES.build("linear").weight(t), 1 / t)  # the paper's Eq. 2
    torch.testing.assert_close(SCHEDULES.build("loglinear").weight(t), 1 / t)
    torch.testing.assert_close(SCHEDULES.build("polynomial", {"p": 3}).weight(t), 3 / t)


def objective(**kwargs) -> MaskedDiffusion:
    return OBJECTIVES.build("masked_diffusion", kwargs, schedule=Linear(), mask_id=MASK_ID)


def test_sample_t_in_range_and_stratified() -> None:
    obj = objective(t_eps=0.01)
    t = obj.sample_t(8, generator=torch.Generator().manual_seed(0))
    assert t.shape == (8,)
    assert ((t >= 0.01) & (t < 1)).all()
    u = ((t - 0.01) / 0.99).sort().values  # one draw per stratum of width 1/8
    assert (u // (1 / 8) == torch.arange(8)).all()
    plain = objective(antithetic=False).sample_t(1000, torch.Generator().manual_seed(0))
    assert plain.min() >= 1e-3 and plain.mean().item() == pytest.approx(0.5, abs=0.05)


def test_corrupt_masks_maskable_tokens_at_rate_one_minus_alpha() -> None:
    obj = OBJECTIVES.build("masked_diffusion", schedule=SCHEDULES.build("cosine"), mask_id=MASK_ID)
    ids = torch.randint(5, 50, (4, 5000), generator=torch.Generator().manual_seed(0))
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, :10] = False
    t = torch.tensor([0.1, 0.3, 0.6, 0.9])
    noisy, masked = obj.corrupt(ids, t, maskable, torch.Generator().manual_seed(1))
    assert not masked[:, :10].any()
    assert (noisy[masked] == MASK_ID).all() and (noisy[~masked] == ids[~masked]).all()
    rate = masked[:, 10:].float().mean(dim=1)
    torch.testing.assert_close(rate, 1 - obj.schedule.alpha(t), atol=0.02, rtol=0)


def test_weighted_loss_ignores_clean_positions_and_never_predicts_mask() -> None:
    obj = objective()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 12, (3, 20), generator=gen)
    t = torch.tensor([0.2, 0.5, 0.8])
    _, masked = obj.corrupt(ids, t, torch.ones_like(ids, dtype=torch.bool), gen)
    assert masked.any() and (~masked).any()
    logits = torch.randn(3, 20, 12, generator=gen, requires_grad=True)
    loss = obj.weighted_loss(logits, ids, masked, t)
    assert loss.shape == (3,)
    loss.sum().backward()
    assert (logits.grad[~masked] == 0).all() and (logits.grad[masked] != 0).any()
    assert (logits.grad[..., MASK_ID] == 0).all()  # the mask logit takes no part

    other = logits.detach().clone()
    other[~masked] = torch.randn(int((~masked).sum()), 12, generator=gen) * 10
    other[..., MASK_ID] = 100.0  # a huge mask logit changes nothing: it is excluded
    torch.testing.assert_close(obj.weighted_loss(other, ids, masked, t), loss.detach())


def test_linear_weight_halving_t_doubles_the_loss() -> None:
    obj = objective()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 12, (4, 30), generator=gen)
    masked = torch.rand(4, 30, generator=gen) < 0.5
    logits = torch.randn(4, 30, 12, generator=gen)
    t = torch.tensor([0.9, 0.5, 0.31, 0.02])
    torch.testing.assert_close(
        obj.weighted_loss(logits, ids, masked, t / 2),
        2 * obj.weighted_loss(logits, ids, masked, t),
        rtol=1e-6,
        atol=0,
    )


def test_uniform_model_elbo_is_length_times_log_vocab_minus_one() -> None:
    """With uniform logits each masked token costs ln(V - 1) (the mask is excluded), and
    E_t[weight(t) (1 - alpha(t))] = 1 for the linear schedule, so E[ELBO] = n ln(V - 1)."""
    vocab, batch, length = 8, 512, 64
    obj = objective()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(MASK_ID + 1, vocab, (batch, length), generator=gen)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, 0] = False  # a CLS-like token
    attention = torch.ones_like(maskable)
    attention[:, -4:] = False  # pads are never maskable
    seen = []

    def uniform(noisy: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        seen.append(attention_mask)
        return torch.zeros(*noisy.shape, vocab)

    loss, stats = obj.loss(uniform, ids, maskable, attention, torch.Generator().manual_seed(1))
    n_maskable = batch * (length - 5)
    assert seen[0] is attention and stats["n_maskable"] == n_maskable
    expected = n_maskable * math.log(vocab - 1)
    # Monte Carlo std is ~1.3 % here; counting the mask token (ln V) would be 6.8 % off
    assert stats["nll_nats"].item() == pytest.approx(expected, rel=0.04)
    assert loss.item() == pytest.approx(math.log(vocab - 1), rel=0.04)
    assert stats["masked_fraction"].item() == pytest.approx(0.5, abs=0.02)


def test_loss_gradient_only_through_masked_positions() -> None:
    obj = objective()
    ids = torch.randint(5, 12, (4, 16), generator=torch.Generator().manual_seed(0))
    maskable = torch.ones_like(ids, dtype=torch.bool)
    logits = torch.randn(4, 16, 12, requires_grad=True)
    noisy_seen = []

    def model(noisy: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        noisy_seen.append(noisy)
        return logits

    loss, _ = obj.loss(model, ids, maskable, generator=torch.Generator().manual_seed(2))
    loss.backward()
    masked = noisy_seen[0] == MASK_ID
    assert masked.any() and (~masked).any()
    assert (logits.grad[~masked] == 0).all()


def count_objective() -> MaskedDiffusion:
    return OBJECTIVES.build("masked_diffusion_count", schedule=Linear(), mask_id=MASK_ID)


def test_count_estimator_masks_a_uniform_number_of_maskable_tokens() -> None:
    obj = count_objective()
    ids = torch.randint(5, 12, (4000, 12), generator=torch.Generator().manual_seed(0))
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, :2] = False
    _, masked, weight = obj.noise(ids, maskable, torch.Generator().manual_seed(1))
    m = masked.sum(-1)
    assert not masked[:, :2].any()
    assert torch.equal(torch.bincount(m, minlength=11)[1:], torch.full((10,), 400))  # stratified
    torch.testing.assert_close(weight, 10 / m.float())


def test_count_estimator_is_exact_for_a_uniform_model() -> None:
    """Every term is (n/m) * m * ln(V-1): the bound has zero variance, unlike weight(t)."""
    obj, vocab = count_objective(), 12
    ids = torch.randint(5, vocab, (64, 20), generator=torch.Generator().manual_seed(0))
    maskable = torch.ones_like(ids, dtype=torch.bool)
    _, stats = obj.loss(
        lambda x, _: torch.zeros(*x.shape, vocab),
        ids,
        maskable,
        generator=torch.Generator().manual_seed(3),
    )
    assert stats["nll_nats"].item() == pytest.approx(64 * 20 * math.log(vocab - 1), rel=1e-5)


def test_both_estimators_have_the_same_expectation() -> None:
    """A model whose per-position CE is fixed: both bounds estimate the sum of those CEs."""
    vocab, length = 12, 10
    logits = torch.randn(1, length, vocab, generator=torch.Generator().manual_seed(0))
    ids = torch.randint(5, vocab, (1, length), generator=torch.Generator().manual_seed(1))
    never = torch.arange(vocab) == MASK_ID
    exact = torch.nn.functional.cross_entropy(
        logits[0].masked_fill(never, float("-inf")), ids[0], reduction="sum"
    ).item()
    batch = ids.expand(20000, -1)
    maskable = torch.ones_like(batch, dtype=torch.bool)
    for obj in (objective(), count_objective()):
        _, stats = obj.loss(
            lambda x, _: logits.expand(x.shape[0], -1, -1),
            batch,
            maskable,
            generator=torch.Generator().manual_seed(2),
        )
        assert stats["nll_nats"].item() / 20000 == pytest.approx(exact, rel=0.03)
