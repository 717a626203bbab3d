"""Every registered tokeniser (each example it declares), every length 1..300: sampled ids
decode to exactly the requested bp.

The denoiser is a cheap random network that puts real probability on every token, specials and
N included, so only the tokeniser's layout keeps the sampler on legal tokens.
"""

import pytest
import torch
from registered import build_tokenizer, examples
from torch import Tensor

from d3lm.registry import SAMPLERS
from d3lm.sampling import NetworkDenoiser
from d3lm.tokenizers import Tokenizer


def random_denoiser(tok: Tokenizer) -> NetworkDenoiser:
    g = torch.Generator().manual_seed(0)
    embed = torch.randn(tok.vocab_size, 8, generator=g)
    project = torch.randn(8, tok.vocab_size, generator=g)

    def encode(ids: Tensor) -> Tensor:
        return embed[ids]

    def head(h: Tensor) -> Tensor:
        return h @ project

    return NetworkDenoiser(encode, head, tok.mask_id, tok.vocab_size)


@pytest.mark.parametrize("case", examples("tokenizer"))
def test_random_sampler_returns_exact_length_for_every_length(case, one_thread):
    name, params = case
    tok = build_tokenizer(name, params)
    den = random_denoiser(tok)
    sampler = SAMPLERS.build("random", {"steps": 3})
    for n_bp in range(1, 301):
        ids = sampler.sample(den, 2, tok.layout(n_bp), seed=n_bp)
        assert (ids != tok.mask_id).all()
        for row in ids:
            seq = tok.decode(row)
            assert len(seq) == n_bp and set(seq) <= set("ACGT"), (name, params, n_bp, seq)
