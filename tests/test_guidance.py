"""Conditional sampling and classifier-free guidance: the condition token is known at position 0
of a widened layout; ``GuidedDenoiser`` mixes the conditional and null passes of one network
call. Ground truth is an exact conditional oracle (one Markov chain per class, their mixture
under the null token): without guidance a label draws its class's chain and the null token the
mixture, with every preset that is exact with an exact denoiser; guidance raises the class's
likelihood ratio; and a wrapped network composes with the feature cache, merged cohorts and the
dKV cache."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_sampling_oracle import assert_fits
from torch import Tensor

from d3lm.conditioning import LabelConditioning
from d3lm.model import PRESETS as SIZES
from d3lm.model import LMHead, NTv2Encoder
from d3lm.registry import SAMPLERS
from d3lm.sampling import GuidedDenoiser, NetworkDenoiser, Sampler, guided
from d3lm.sampling.oracle import (
    TOY_CLASSES_PRIOR,
    TOY_CLS,
    TOY_MASK,
    TOY_VOCAB,
    ClassChainsDenoiser,
    toy_classes,
    toy_layout,
)

N_NUC, N_SAMPLES = 6, 4000
CLASSES = ("toy", "gc")
LABELS = LabelConditioning(CLASSES, first_id=TOY_VOCAB)
#: Presets exact with an exact denoiser at these settings: one token per step (random,
#: confidence: its order reads only committed tokens), or binomial counts over many steps whose
#: shared steps are rare (ancestral, and ReMDM, whose remasking is a Gibbs move of the chain).
EXACT = {
    "random": {"steps": N_NUC, "temperature": 1.0},
    "confidence": {"steps": N_NUC},
    "ancestral": {"steps": 200},
    "remdm": {"steps": 200},
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Tiny tensors: threads only contend (and outputs are compared bitwise)."""


@pytest.fixture(scope="module")
def oracle() -> ClassChainsDenoiser:
    return toy_classes()


def wide_layout(n_nucleotides: int = N_NUC) -> Tensor:
    return LABELS.layout(toy_layout(n_nucleotides))


def prompt(labels: list[str | None], n: int = 1, n_nucleotides: int = N_NUC) -> Tensor:
    """All-masked ids, ``n`` rows per label, the condition token at position 0."""
    rows = [label for label in labels for _ in range(n)]
    ids = torch.full((len(rows), 1 + n_nucleotides), TOY_MASK)
    ids[:, 0] = TOY_CLS
    return LABELS.encode(ids, rows, [f"row{i}" for i in range(len(rows))])


def infill(preset: str, den, ids: Tensor, seed: int = 11, batch_size: int = 8192, **params):
    s = SAMPLERS.build(preset, {**EXACT[preset], **params})
    return s.infill(den, ids, ids != TOY_MASK, wide_layout(ids.shape[1] - 1), seed=seed,
                    batch_size=batch_size)  # fmt: skip


def log_ratio(oracle: ClassChainsDenoiser, samples: Tensor, k: int) -> float:
    """Mean log p_k(x) - log p_mixture(x) of complete samples: the evidence for class ``k``."""
    log = torch.stack([chain.log_evidence(samples) for chain in oracle.chains], -1)
    mixture = torch.logsumexp(log + TOY_CLASSES_PRIOR.double().log(), -1)
    return float((log[:, k] - mixture).mean())


# ---- the exact oracle ----------------------------------------------------------------------


@pytest.mark.parametrize("preset", sorted(EXACT))
def test_a_label_draws_its_class_and_the_null_token_the_mixture(oracle, preset):
    labels: list[str | None] = [*CLASSES, None]
    ids = prompt(labels, N_SAMPLES)
    out = infill(preset, oracle, ids)
    assert torch.equal(out[:, 0], ids[:, 0])  # the condition token is never changed
    for i in range(len(labels)):
        rows = out[i * N_SAMPLES : (i + 1) * N_SAMPLES]
        assert_fits(rows, ids[i * N_SAMPLES : i * N_SAMPLES + 1], oracle)
    # the classes differ, so fitting the right one is not vacuous
    gc_vs_toy = prompt(["toy"])
    with pytest.raises(AssertionError, match="chi-square"):
        assert_fits(out[N_SAMPLES : 2 * N_SAMPLES], gc_vs_toy, oracle)


def test_infill_draws_each_class_posterior_given_known_tokens(oracle):
    """Known tokens shift the null token's class posterior: the mixture's posterior, not its
    prior, is what the null rows draw."""
    labels: list[str | None] = [*CLASSES, None]
    ids = prompt(labels, N_SAMPLES)
    ids[:, 2], ids[:, 5] = 4, 5  # C at chain position 1, G at chain position 4
    out = infill("random", oracle, ids, seed=5)
    assert torch.equal(out[ids != TOY_MASK], ids[ids != TOY_MASK])
    for i in range(len(labels)):
        assert_fits(out[i * N_SAMPLES : (i + 1) * N_SAMPLES], ids[i * N_SAMPLES :][:1], oracle)


@pytest.mark.parametrize("preset", sorted(EXACT))
def test_guidance_raises_the_class_likelihood_ratio(oracle, preset):
    ratios = {}
    for k, label in enumerate(CLASSES):
        ids = prompt([label], 1000)
        ratios[label] = [
            log_ratio(oracle, infill(preset, guided(oracle, w, LABELS.null_id), ids), k)
            for w in (0.0, 1.0, 3.0)
        ]
        assert ratios[label] == sorted(ratios[label]) and ratios[label][0] > 0, ratios


@pytest.mark.parametrize("preset", sorted(EXACT))
def test_guided_samples_are_batch_invariant(oracle, preset):
    den = GuidedDenoiser(oracle, 2.0, LABELS.null_id)
    ids = prompt([*CLASSES, None, "gc"], 16)
    out = infill(preset, den, ids, seed=3, batch_size=64, steps=12)
    assert torch.equal(infill(preset, den, ids, seed=3, batch_size=7, steps=12), out)
    s = SAMPLERS.build(preset, {**EXACT[preset], "steps": 12})
    part = s.infill(den, ids[20:], ids[20:] != TOY_MASK, wide_layout(), seed=3, batch_size=7,
                    first_index=20)  # fmt: skip
    assert torch.equal(part, out[20:])


# ---- the wrapper on a network -----------------------------------------------------------------

MASK, CLS, V = 1, 2, 24
NET_LABELS = LabelConditioning(("a", "b"), first_id=V)


def conditional_net(seed: int) -> NetworkDenoiser:
    """A random-init ``micro`` encoder that embeds the condition ids too, with a V-wide head."""
    torch.manual_seed(seed)
    wide = dataclasses.replace(SIZES["micro"], vocab_size=V + NET_LABELS.n_tokens)
    head = LMHead(dataclasses.replace(SIZES["micro"], vocab_size=V)).eval()
    return NetworkDenoiser(NTv2Encoder(wide).eval(), head, MASK, V)


def net_layout(n_body: int = 10) -> Tensor:
    layout = torch.zeros(1 + n_body, V, dtype=torch.bool)
    layout[0, CLS] = True
    layout[1:, 4:20] = True
    return NET_LABELS.layout(layout)


def net_prompt(n: int, n_body: int = 10) -> Tensor:
    ids = torch.full((n, 1 + n_body), MASK)
    labels = [("a", "b", None)[i % 3] for i in range(n)]
    return NET_LABELS.encode(ids, labels, [str(i) for i in range(n)])


@pytest.fixture(scope="module")
def net() -> NetworkDenoiser:
    return conditional_net(5)


def test_guided_logits_mix_both_passes_of_one_call(net):
    ids = net_prompt(5)
    ids[:, 3:7] = torch.randint(4, 20, (5, 4), generator=torch.Generator().manual_seed(0))
    null = NET_LABELS.unconditional(ids)
    at = torch.rand(ids.shape, generator=torch.Generator().manual_seed(1)) < 0.5
    for where in (None, at):
        cond, uncond = (net.logits(net.features(x, where)) for x in (ids, null))
        for w in (0.0, 1.5):
            den = GuidedDenoiser(net, w, NET_LABELS.null_id)
            before = net.nfe
            out = den.logits(den.features(ids, where))
            assert den.nfe == net.nfe - before == 2 * len(ids)  # both passes count
            want = (1 + w) * cond - w * uncond
            finite = want.isfinite()
            torch.testing.assert_close(out[finite], want[finite], rtol=1e-5, atol=1e-5)
            assert out.shape[-1] == V and (out[..., MASK] == float("-inf")).all()
            assert not out.isnan().any()


def test_minus_infinity_stays_and_never_makes_nan(oracle):
    den = GuidedDenoiser(oracle, 2.0, LABELS.null_id)
    logits = den.logits(den.features(prompt([*CLASSES, None])))
    assert not logits.isnan().any()
    assert (logits[:, 1:].isfinite().sum(-1) == 4).all()  # the four nucleotides


def test_weight_zero_is_the_plain_conditional_sampler(net):
    assert guided(net, 0.0, NET_LABELS.null_id) is net
    ids = net_prompt(9)
    plain = Sampler(steps=5).infill(net, ids, ids != MASK, net_layout(), seed=2)
    assert torch.equal(plain[:, 0], ids[:, 0])
    den = guided(net, 1.0, NET_LABELS.null_id)
    assert isinstance(den, GuidedDenoiser)
    s = Sampler(steps=5)
    out = s.infill(den, ids, ids != MASK, net_layout(), seed=2, batch_size=4)
    assert den.nfe == 2 * int(s.last_run.nfe.sum())
    assert torch.equal(out[:, 0], ids[:, 0]) and not torch.equal(out, plain)
    with pytest.raises(ValueError, match="guidance weight"):
        GuidedDenoiser(net, -1.0, NET_LABELS.null_id)


@pytest.mark.parametrize("preset", ["confidence", "remdm"])
def test_guidance_composes_with_the_dkv_cache(net, preset):
    """refresh 1 is the exact guided sampler; a larger refresh stays batch-invariant."""
    ids, layout = net_prompt(10), net_layout()
    den = GuidedDenoiser(net, 2.0, NET_LABELS.null_id)
    exact = SAMPLERS.build(preset, {"steps": 6}).infill(den, ids, ids != MASK, layout, seed=4,
                                                        batch_size=4)  # fmt: skip
    for refresh in (1, 3):
        kv = {"steps": 6, "kv_cache": "dkv", "kv_cache_params": {"refresh": refresh}}
        s = SAMPLERS.build(preset, kv)
        out = s.infill(den, ids, ids != MASK, layout, seed=4, batch_size=4)
        assert torch.equal(out[:, 0], ids[:, 0]) and (out != MASK).all()
        assert torch.equal(s.infill(den, ids, ids != MASK, layout, seed=4, batch_size=10), out)
        if refresh == 1:
            assert torch.equal(out, exact)
        else:
            assert (s.last_run.full < s.last_run.nfe).any()


def test_a_condition_slot_left_to_draw_is_refused(net):
    with pytest.raises(ValueError, match=r"position 0 .* condition token must be known"):
        Sampler(steps=3).sample(net, 2, net_layout(), seed=0)
