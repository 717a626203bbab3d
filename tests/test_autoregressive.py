"""The autoregressive baseline on the NT v2 backbone: the exact-NLL objective, causality in
training and sampling, the left-to-right sampler against an exact order-2 Markov chain, learning
on such a chain, and train -> sample through the runner."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch import Tensor

from d3lm.config import load_config, plain
from d3lm.data.fasta import read_fasta
from d3lm.lit.diffusion_lm import DiffusionLM
from d3lm.registry import SAMPLERS
from d3lm.rundir import RunDir
from d3lm.sampling import CausalDenoiser, NetworkDenoiser, network_denoiser
from d3lm.sampling.oracle import TOY_CLS, TOY_MASK, TOY_NUCLEOTIDES, TOY_VOCAB, toy_layout
from d3lm.stages.checkpoints import load_model
from d3lm.stages.sample import sample
from d3lm.stages.train import train

AR = ["diffusion.objective.name=autoregressive"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Tiny tensors: threads only contend."""


def micro_model(*overrides: str, seed: int = 0) -> DiffusionLM:
    cfg = load_config("micro", overrides=list(overrides))
    torch.manual_seed(seed)
    return DiffusionLM(
        tokenizer=plain(cfg.tokenizer),
        model=plain(cfg.model),
        diffusion=plain(cfg.diffusion),
        optim=plain(cfg.optim),
        max_steps=10,
        seed=seed,
    )


def roughen(model: DiffusionLM) -> DiffusionLM:
    """Large random weights, so logits depend strongly on position and context (an alignment
    error cannot hide in a near-uniform model)."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


# ---- objective: exact NLL, pads, causality ---------------------------------------------------


def direct_terms(model: DiffusionLM, row: list[int], shift: int = 1) -> list[float]:
    """-log p(x_i | x_<i) for i >= 1, each from its own forward pass over the prefix alone
    (``shift=0``: the deliberately misaligned reading, for the test's power)."""
    tok = model.tokenizer
    terms = []
    for i in range(1, len(row)):
        prefix = torch.tensor([row[: i + 1 - shift]])
        h = model.encoder(prefix, causal=True)[0, -1]
        logits = model.head(h).double()
        logits[tok.mask_id] = float("-inf")
        terms.append(-torch.log_softmax(logits, -1)[row[i]].item())
    return terms


def test_ar_nll_is_the_exact_sum_of_next_token_log_probabilities():
    model = roughen(micro_model(*AR))
    tok = model.tokenizer
    seqs = ["ACGTTGCAAGTCCGATAGCATTAGCAGTACGA", "TTGACCA", "GGGATTACAGATTACACCC"]
    ids = tok.batch_encode(seqs)  # right-padded; 6-mers and single-nucleotide tails
    with torch.no_grad():
        loss, stats_ = model.objective.loss(
            model, ids, ~model.special[ids], attention_mask=ids != tok.pad_id
        )
    rows = [tok.encode(s) for s in seqs]
    with torch.no_grad():
        terms = [t for r in rows for t in direct_terms(model, r)]
        misaligned = [t for r in rows for t in direct_terms(model, r, shift=0)]
    expected = sum(terms)
    n_predicted = sum(len(r) - 1 for r in rows)  # every token but <cls>
    assert stats_["nll_nats"].item() == pytest.approx(expected, rel=1e-5)
    assert stats_["n_maskable"].item() == n_predicted
    assert loss.item() == pytest.approx(expected / n_predicted, rel=1e-5)
    # power: reading the logits one position off changes the terms by nats, not rounding
    assert sum(abs(a - b) for a, b in zip(terms, misaligned, strict=True)) / len(terms) > 0.5


def test_ar_model_is_causal_and_the_diffusion_model_is_not():
    for overrides, causal in ((AR, True), ([], False)):
        model = roughen(micro_model(*overrides))
        tok = model.tokenizer
        tok_ids = tok.batch_encode(["ACGTTGCAAGTCCGATAGCATTAGCAGTACGAGTAC"])
        changed = tok_ids.clone()
        changed[0, 4] = tok.encode("CCCCCC")[1] if tok_ids[0, 4] != tok.encode("CCCCCC")[1] else 7
        with torch.no_grad():
            a, b = model(tok_ids), model(changed)
        assert model.objective.causal is causal
        assert torch.equal(a[0, :4], b[0, :4]) is causal  # earlier positions unaffected iff causal
        assert not torch.allclose(a[0, 4:], b[0, 4:])


def test_ar_bits_per_nucleotide_of_a_uniform_model():
    """Zero logits: uniform over the V - 1 non-mask tokens for every token, so the exact NLL is
    log2(V - 1) bits per token, divided by the nucleotides per token (all 6-mers here)."""
    model = micro_model(*AR)
    for module in (model.head.decoder, model.head.dense):
        torch.nn.init.zeros_(module.weight)
    torch.nn.init.zeros_(model.head.bias)
    tok = model.tokenizer
    g = torch.Generator().manual_seed(0)
    seqs = ["".join("ACGT"[i] for i in torch.randint(4, (60,), generator=g)) for _ in range(8)]
    with torch.no_grad():
        _, bpn, nucleotides = model._loss(tok.batch_encode(seqs))
    assert nucleotides.item() == 8 * 60
    assert bpn.item() == pytest.approx(math.log2(tok.vocab_size - 1) / 6, rel=1e-5)


# ---- the denoiser the runner builds ------------------------------------------------------


def test_denoiser_follows_the_objective_and_shifts_features():
    ar = roughen(micro_model(*AR))
    tok = ar.tokenizer
    den = network_denoiser(ar.encoder, ar.head, ar.objective, tok.mask_id, tok.vocab_size)
    assert isinstance(den, CausalDenoiser)
    ids = tok.batch_encode(["ACGTTGCAAGTCCGATAGCATTAGCAGTACGAGT", "TTTTTTACGGCAGGCCCATTACAGGA"])
    with torch.no_grad():
        full = ar(ids)
    logits = den.logits(den.features(ids))
    # position i reads the model's logits at i - 1 (mask excluded)
    assert torch.allclose(logits[:, 1:, 3:], full[:, :-1, 3:], atol=1e-5)
    assert (logits[..., tok.mask_id] == float("-inf")).all()
    at = torch.zeros_like(ids, dtype=torch.bool)
    at[0, 3], at[1, 1], at[1, 4] = True, True, True
    assert torch.equal(den.features(ids, at), den.features(ids)[at])

    diffusion = micro_model()
    plain = network_denoiser(
        diffusion.encoder, diffusion.head, diffusion.objective, tok.mask_id, tok.vocab_size
    )
    assert type(plain) is NetworkDenoiser


# ---- ground truth: an exact causal order-2 Markov chain ------------------------------------

MASK, CLS, NUC, V = TOY_MASK, TOY_CLS, TOY_NUCLEOTIDES, TOY_VOCAB
N_NUC, N_SAMPLES, FAMILY_ALPHA = 6, 20_000, 0.01


def order2_chain(seed: int = 0, floor: float = 0.6) -> tuple[Tensor, Tensor, Tensor]:
    """(p(x1) (4,), p(x2 | x1) (4, 4), p(x_i | x_i-2, x_i-1) (4, 4, 4)): random peaked rows
    mixed with ``floor`` of uniform, so every probability is >= floor / 4 (at 0.6: chi-square
    expected counts stay large)."""
    g = torch.Generator().manual_seed(seed)

    def rows(*shape: int) -> Tensor:
        x = -(torch.log(torch.rand(*shape, 4, generator=g, dtype=torch.float64)) ** 3)
        return (1 - floor) * x / x.sum(-1, keepdim=True) + floor / 4

    return rows(), rows(4), rows(4, 4)


class CausalChainOracle:
    """An exact causal "network": the state at position j is log p(next | tokens <= j) of an
    order-2 chain, read only from positions <= j; NaN where that context holds a mask (a
    left-to-right sampler must never read it). Identity head."""

    def __init__(self, first: Tensor, second: Tensor, trans: Tensor) -> None:
        self.first, self.second, self.trans = first, second, trans

    def __call__(self, ids: Tensor, causal: bool = False) -> Tensor:
        assert causal, "the oracle is causal by construction"
        x = ids - NUC[0]
        x[ids == MASK] = -1
        b, length = ids.shape
        nuc = torch.full((b, length, 4), float("nan"), dtype=torch.float64)
        nuc[:, 0] = self.first.log()
        ok1 = x[:, 1] >= 0
        nuc[ok1, 1] = self.second[x[ok1, 1]].log()
        prev, cur = x[:, 1:-1], x[:, 2:]
        ok = (prev >= 0) & (cur >= 0)
        nuc[:, 2:][ok] = self.trans[prev[ok], cur[ok]].log()
        out = torch.full((b, length, V), float("-inf"), dtype=torch.float64)
        out[..., NUC] = nuc
        return out


def trimer_probabilities(first: Tensor, second: Tensor, trans: Tensor, n: int) -> list[Tensor]:
    """Exact P(x_i, x_i+1, x_i+2) (4, 4, 4) for every window i of an ``n``-long chain."""
    pair = first[:, None] * second
    out = []
    for _ in range(n - 2):
        tri = pair[..., None] * trans
        out.append(tri)
        pair = tri.sum(0)
    return out


def chain_p_values(samples: Tensor, chain: tuple[Tensor, Tensor, Tensor]) -> list[float]:
    x = samples[:, 1:] - NUC[0]
    p = []
    for i, tri in enumerate(trimer_probabilities(*chain, N_NUC)):
        obs = torch.bincount(16 * x[:, i] + 4 * x[:, i + 1] + x[:, i + 2], minlength=64)
        p.append(stats.chisquare(obs.double(), tri.flatten() * len(x)).pvalue)
    return p


def sample_chain(oracle: CausalChainOracle, seed: int = 5) -> Tensor:
    den = CausalDenoiser(oracle, lambda h: h, MASK, V)
    sampler = SAMPLERS.build("left_to_right")
    out = sampler.sample(den, N_SAMPLES, toy_layout(N_NUC), seed=seed, batch_size=N_SAMPLES)
    assert (out[:, 0] == CLS).all() and ((out[:, 1:] >= NUC[0]) & (out[:, 1:] <= NUC[-1])).all()
    assert (sampler.last_run.trace[:, 1:] == torch.arange(N_NUC)).all()  # one per step, in order
    assert (sampler.last_run.nfe == N_NUC).all()
    return out


def test_left_to_right_sampler_draws_from_the_exact_ar_model():
    chain = order2_chain()
    p = chain_p_values(sample_chain(CausalChainOracle(*chain)), chain)
    assert min(p) > FAMILY_ALPHA / len(p), f"chi-square p-values {sorted(p)[:3]}"


def test_negative_control_losing_second_order_context_fails():
    """The oracle with x_i-2 ignored (first row of the table for every context) must fail, so
    the test has power against a sampler that drops part of the left context."""
    first, second, trans = order2_chain()
    blind = CausalChainOracle(first, second, trans[:1].expand(4, 4, 4))
    assert min(chain_p_values(sample_chain(blind), (first, second, trans))) < 1e-9


# ---- learning: the AR objective on an order-2 chain beats the unigram -----------------------


def chain_sequences(chain: tuple[Tensor, Tensor, Tensor], n: int, length: int, seed: int) -> list:
    first, second, trans = chain
    g = torch.Generator().manual_seed(seed)
    x = torch.empty(n, length, dtype=torch.long)
    x[:, 0] = torch.multinomial(first.float(), n, replacement=True, generator=g)
    x[:, 1] = torch.multinomial(second[x[:, 0]].float(), 1, generator=g)[:, 0]
    for i in range(2, length):
        x[:, i] = torch.multinomial(trans[x[:, i - 2], x[:, i - 1]].float(), 1, generator=g)[:, 0]
    return ["".join("ACGT"[j] for j in row) for row in x.tolist()]


def entropy_bits(p: Tensor) -> Tensor:
    return -(p * p.log2()).sum(-1)


def best_nll_bits(chain: tuple[Tensor, Tensor, Tensor], length: int, order: int) -> float:
    """Expected -log2 p(x) / length of the best predictor that sees the last ``order`` (1 or 2)
    tokens: the chain's entropy rate for 2; for 1, x_i-2 is marginalised out."""
    first, second, trans = chain
    total = entropy_bits(first) + (first * entropy_bits(second)).sum()
    for tri in trimer_probabilities(first, second, trans, length):
        if order == 2:
            total = total + (tri.sum(-1) * entropy_bits(trans)).sum()
        else:
            pair = tri.sum(0)  # P(x_i+1, x_i+2)
            total = total + (pair.sum(-1) * entropy_bits(pair / pair.sum(-1, keepdim=True))).sum()
    return (total / length).item()


def test_ar_training_learns_second_order_context():
    """From the unigram start, 60 steps of the AR objective get the held-out exact NLL below
    the best order-1 model (so the model uses x_i-2), and never below the chain's entropy rate
    (it would, if the causal mask leaked the future)."""
    chain = order2_chain(seed=1, floor=0.1)
    length = 48
    train = chain_sequences(chain, 512, length, seed=0)
    held_out = chain_sequences(chain, 128, length, seed=1)
    model = micro_model(*AR, "tokenizer.name=kmer", "tokenizer.params.k=1")
    tok = model.tokenizer
    train_ids, held_ids = tok.batch_encode(train), tok.batch_encode(held_out)
    model.init_output_bias(train_ids)  # start at the unigram: only context can lower the NLL

    def held_out_bpn() -> float:
        with torch.no_grad():
            return model.eval()._loss(held_ids)[1].item()

    start = held_out_bpn()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(60):
        loss, _, _ = model._loss(train_ids[torch.randint(len(train_ids), (32,), generator=g)])
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = held_out_bpn()

    counts = torch.tensor([sum(s.count(c) for s in train) for c in "ACGT"], dtype=torch.float64)
    unigram = entropy_bits(counts / counts.sum()).item()
    order1, rate = best_nll_bits(chain, length, 1), best_nll_bits(chain, length, 2)
    assert (unigram, order1, rate) == pytest.approx((2.00, 1.77, 1.29), abs=0.01)
    assert start == pytest.approx(unigram, abs=0.02)  # the bias init is the unigram model
    assert rate - 0.05 < end < order1 - 0.1, (start, end)


# ---- end to end: train with the AR objective, sample left to right ---------------------------


@pytest.mark.slow
def test_runner_trains_ar_and_samples_exact_length_fasta(dna_table, tmp_path):
    cfg = load_config(
        "micro",
        overrides=[
            *AR,
            f"data.dataset={dna_table}",
            f"runs_dir={tmp_path}",
            "run=ar",
            "experiment=ar",
            "trainer.max_steps=10",
            "sample.sampler.name=left_to_right",
            "sample.n=5",
            "sample.bp=47",
        ],
    )
    run_dir = train(cfg)
    log = RunDir(run_dir).log().dropna(subset=["val/bpn"])
    assert len(log) and log["val/bpn"].between(0.5, 3.0).all()
    assert load_model(run_dir).objective.causal
    trace = tmp_path / "trace.pt"
    out = sample(cfg, run_dir, trace=trace)
    records = list(read_fasta(out))
    assert len(records) == 5 and all(len(seq) == 47 for _, seq in records)
    assert set("".join(seq for _, seq in records)) <= set("ACGT")
    # <cls> + 7 six-mers + 5 singles, committed left to right, one token per step
    assert torch.equal(torch.load(trace)["trace"], torch.arange(-1, 12).expand(5, 13))


def test_left_to_right_preset_steps_follow_the_length():
    s = SAMPLERS.build("left_to_right")
    assert (s.temperature, s.order.__class__.__name__) == (1.0, "LeftToRightOrder")
    layout = toy_layout(9)
    den = CausalDenoiser(CausalChainOracle(*order2_chain()), lambda h: h, MASK, V)
    s.sample(den, 3, layout, seed=0)
    assert s.steps == 9 and (s.last_run.nfe == 9).all()
    # an explicit step count keeps the fixed count: the leftmost three tokens per step
    fixed = SAMPLERS.build("left_to_right", {"steps": 3})
    fixed.sample(den, 2, layout, seed=0)
    assert fixed.last_run.trace[:, 1:].tolist() == [[0, 0, 0, 1, 1, 1, 2, 2, 2]] * 2
