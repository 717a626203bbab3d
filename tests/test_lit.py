import math

import pytest
import torch

from d3lm.config import load_config, plain
from d3lm.lit.diffusion_lm import DiffusionLM, warmup_cosine


@pytest.fixture()
def micro_model() -> DiffusionLM:
    cfg = load_config("micro")
    return DiffusionLM(
        tokenizer=plain(cfg.tokenizer),
        model=plain(cfg.model),
        diffusion=plain(cfg.diffusion),
        optim=plain(cfg.optim),
        max_steps=10,
    )


def test_output_bias_starts_at_log_unigram_frequencies(micro_model):
    tok = micro_model.tokenizer
    ids = torch.tensor([tok.encode("AAAAAAAAAAAA"), tok.encode("AAAAAACCCCCC")])  # 3 x A6, 1 x C6
    micro_model.init_output_bias(ids)
    bias = micro_model.head.bias
    total = 4 + (tok.vocab_size - len(tok.special_ids))  # add-one over the non-special tokens
    a6, c6 = tok.encode("AAAAAA")[1], tok.encode("CCCCCC")[1]
    assert bias[a6].item() == pytest.approx(math.log(4 / total), rel=1e-5)
    assert bias[c6].item() == pytest.approx(math.log(2 / total), rel=1e-5)
    assert (bias[tok.special_ids] < -20).all()


def test_bits_per_nucleotide_of_a_uniform_model_is_the_log_of_the_legal_vocabulary(
    micro_model, monkeypatch
):
    """With zero logits the model is uniform over the V - 1 non-mask tokens: the ELBO per token
    is log(V - 1) nats in expectation, i.e. log2(V - 1) / k bits per nucleotide. t is fixed at
    0.5 so that the check is not at the mercy of the 1/t weight's heavy tail."""
    monkeypatch.setattr(
        micro_model.objective,
        "sample_t",
        lambda batch, generator=None, device=None: torch.full((batch,), 0.5),
    )
    for module in (micro_model.head.decoder, micro_model.head.dense):
        torch.nn.init.zeros_(module.weight)
    torch.nn.init.zeros_(micro_model.head.bias)
    tok = micro_model.tokenizer
    g = torch.Generator().manual_seed(0)
    seqs = ["".join("ACGT"[i] for i in torch.randint(4, (60,), generator=g)) for _ in range(256)]
    _, bpn, nucleotides = micro_model._loss(tok.batch_encode(seqs), g)
    assert nucleotides.item() == 256 * 60
    assert bpn.item() == pytest.approx(math.log2(tok.vocab_size - 1) / 6, rel=0.05)


def test_warmup_then_cosine_to_the_floor():
    assert warmup_cosine(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100, 0.1) == pytest.approx(0.55)
    assert warmup_cosine(100, 10, 100, 0.1) == pytest.approx(0.1)
