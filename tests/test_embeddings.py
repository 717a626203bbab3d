"""The two embedding options (tied decoder, nucleotide composition) against direct computation."""

import dataclasses

import pytest
import torch

import d3lm.tokenizers  # noqa: F401  (registers the tokenisers)
from d3lm.model import LMHead, NTv2Encoder
from d3lm.model.backbone import PRESETS
from d3lm.model.size import count_parameters
from d3lm.registry import TOKENIZERS

TOK = TOKENIZERS.build("kmer", {"k": 3})


def build(**options):
    cfg = dataclasses.replace(PRESETS["micro"], vocab_size=TOK.vocab_size, **options)
    torch.manual_seed(0)
    encoder = NTv2Encoder(cfg, TOK.nucleotide_codes())
    return cfg, encoder, LMHead(cfg, encoder.embeddings)


def test_nucleotide_codes_spell_each_token():
    codes = TOK.nucleotide_codes()
    for i, token in enumerate(TOK.vocab):
        if i in TOK.special_ids:
            assert (codes[i] == -1).all()
        else:
            assert "".join("ATCGN"[c] for c in codes[i] if c >= 0) == token


def test_composed_embedding_is_word_plus_per_offset_nucleotide_vectors():
    _, encoder, _ = build(nucleotide_embeddings=True)
    emb = encoder.embeddings
    nuc = emb.nucleotide_embeddings.weight
    codes = TOK.nucleotide_codes()
    for token in (6, 17, TOK.vocab.index("G"), TOK.cls_id):
        expected = emb.word_embeddings.weight[token].clone()
        for offset, code in enumerate(codes[token].tolist()):
            if code >= 0:
                expected += nuc[5 * offset + code]
        assert torch.allclose(emb.weight()[token], expected, atol=1e-6)
    ids = torch.tensor([[TOK.cls_id, 6, 17]])
    assert torch.allclose(emb(ids)[0], emb.weight()[ids[0]])


def test_empty_slot_is_zero_and_learns_nothing():
    _, encoder, head = build(nucleotide_embeddings=True, tie_embeddings=True)
    table = encoder.embeddings.nucleotide_embeddings
    assert (table.weight[table.padding_idx] == 0).all()
    ids = torch.tensor([[TOK.cls_id, 6, 17, TOK.vocab.index("A")]])
    head(encoder(ids)).sum().backward()
    assert (table.weight.grad[table.padding_idx] == 0).all()


def test_tied_head_multiplies_the_embedding_table():
    cfg, encoder, head = build(tie_embeddings=True, nucleotide_embeddings=True)
    assert head.decoder is None
    names = {n for n, _ in head.named_parameters()}
    assert names == {"dense.weight", "dense.bias", "layer_norm.weight", "layer_norm.bias", "bias"}
    h = torch.randn(5, cfg.hidden)
    x = head.layer_norm(torch.nn.functional.gelu(head.dense(h)))
    expected = x @ encoder.embeddings.weight().T + head.bias
    assert torch.allclose(head(h), expected, atol=1e-5)


def test_untied_default_is_nt_v2():
    _, encoder, head = build()
    assert head.decoder is not None
    assert encoder.embeddings.nucleotide_embeddings is None


BOTH = {"tie_embeddings": True, "nucleotide_embeddings": True}


@pytest.mark.parametrize("options", [{}, {"tie_embeddings": True}, BOTH])
def test_parameter_count_matches_built_model(options):
    cfg, encoder, head = build(**options)
    built = sum(p.numel() for m in (encoder, head) for p in m.parameters())
    if options.get("nucleotide_embeddings"):  # the counter assumes 6-wide tokens; these are 3
        built += 3 * 5 * cfg.hidden
    assert count_parameters(cfg) == built


def test_options_need_their_inputs():
    cfg = dataclasses.replace(
        PRESETS["micro"], vocab_size=TOK.vocab_size, nucleotide_embeddings=True
    )
    with pytest.raises(ValueError, match="nucleotide_codes"):
        NTv2Encoder(cfg)
    cfg = dataclasses.replace(PRESETS["micro"], tie_embeddings=True)
    with pytest.raises(ValueError, match="tie_embeddings"):
        LMHead(cfg)
