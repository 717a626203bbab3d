"""Ground truth for samplers: with an exact posterior (a Markov chain, forward-backward) and one
token committed per step, ``random`` and ``ancestral`` must draw from the chain itself.

Each check is a chi-square goodness-of-fit test of positional composition (df 3 per position)
and adjacent dinucleotides (df 15 per pair) of 5,000 samples, Bonferroni-corrected to a
family-wise level of 1 %. A negative control (all tokens in one step: independent marginals)
must fail, so the tests have power against the error few-step samplers make.
"""

from __future__ import annotations

import pytest
import torch
from scipy import stats
from torch import Tensor

from d3lm.registry import SAMPLERS
from d3lm.sampling.oracle import (
    TOY_CLS,
    TOY_MASK,
    TOY_NUCLEOTIDES,
    MarkovChainDenoiser,
    toy_chain,
    toy_layout,
)

MASK, CLS, NUC = TOY_MASK, TOY_CLS, TOY_NUCLEOTIDES
N_NUC, N_SAMPLES, FAMILY_ALPHA = 6, 5000, 0.01


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Tiny tensors: threads only contend."""


@pytest.fixture(scope="module")
def oracle() -> MarkovChainDenoiser:
    return toy_chain()


def layout() -> Tensor:
    return toy_layout(N_NUC)


def p_values(samples: Tensor, prompt: Tensor, oracle: MarkovChainDenoiser) -> list[float]:
    """Chi-square p-values: one per free position (composition), one per adjacent free pair."""
    x = samples[:, 1:] - NUC[0]
    free = (prompt[0, 1:] == MASK).nonzero().flatten().tolist()
    marg, pair = oracle.marginals(prompt)[0], oracle.pair_marginals(prompt)[0]
    out = []
    for i in free:
        obs = torch.bincount(x[:, i], minlength=4).double()
        out.append(stats.chisquare(obs, marg[i] * len(x)).pvalue)
    for i in [i for i in free if i + 1 in free]:
        obs = torch.bincount(4 * x[:, i] + x[:, i + 1], minlength=16).double()
        out.append(stats.chisquare(obs, pair[i].flatten() * len(x)).pvalue)
    return out


def assert_fits(samples: Tensor, prompt: Tensor, oracle: MarkovChainDenoiser) -> None:
    p = p_values(samples, prompt, oracle)
    assert min(p) > FAMILY_ALPHA / len(p), f"chi-square p-values {sorted(p)[:3]} ({len(p)} tests)"


def all_masked() -> Tensor:
    prompt = torch.full((1, 1 + N_NUC), MASK)
    prompt[0, 0] = CLS
    return prompt


@pytest.mark.parametrize(
    ("preset", "params"),
    [
        ("random", {"steps": N_NUC, "temperature": 1.0}),  # one token per step: exact
        # Binomial counts: two tokens share a step with probability ~ 15/200 per sequence; the
        # resulting bias (< 0.2 % in any dinucleotide cell) is far below the test's resolution.
        ("ancestral", {"steps": 200}),
    ],
)
def test_sampler_draws_from_the_true_distribution(oracle, preset, params):
    out = SAMPLERS.build(preset, params).sample(
        oracle, N_SAMPLES, layout(), seed=11, batch_size=N_SAMPLES
    )
    assert_fits(out, all_masked(), oracle)


def test_negative_control_one_step_fails(oracle):
    out = SAMPLERS.build("random", {"steps": 1, "temperature": 1.0}).sample(
        oracle, N_SAMPLES, layout(), seed=11, batch_size=N_SAMPLES
    )
    assert min(p_values(out, all_masked(), oracle)) < 1e-9


def test_infill_draws_from_the_conditional(oracle):
    prompt = all_masked().repeat(N_SAMPLES, 1)
    prompt[:, 2], prompt[:, 6] = NUC[2], NUC[0]  # G at chain position 1, A at the last
    known = prompt != MASK
    s = SAMPLERS.build("random", {"steps": 4, "temperature": 1.0})
    out = s.infill(oracle, prompt, known, layout(), seed=5, batch_size=N_SAMPLES)
    assert torch.equal(out[known], prompt[known])
    assert_fits(out, prompt[:1], oracle)
