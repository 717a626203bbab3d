"""The NT v2 encoder, its presets and the LM head."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from d3lm.model import PRESETS, BackboneConfig, LMHead, NTv2Encoder, count_parameters
from d3lm.model.backbone import SwiGLU
from d3lm.model.rotary import Rotary
from d3lm.registry import BACKBONES


@pytest.fixture(scope="module")
def micro() -> tuple[BackboneConfig, NTv2Encoder]:
    torch.manual_seed(0)
    cfg = BACKBONES.build("micro", {"vocab_size": 50})
    return cfg, NTv2Encoder(cfg).eval()


def random_ids(cfg: BackboneConfig, *shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(cfg.vocab_size, shape, generator=torch.Generator().manual_seed(seed))


def test_presets_are_registered_and_take_overrides() -> None:
    assert set(PRESETS) <= set(BACKBONES.names())
    assert BACKBONES.build("nt-v2-50m") == BackboneConfig(
        n_layers=12, hidden=512, heads=16, ffn=2048, max_len=2048
    )
    assert BACKBONES.build("nt-v2-100m").n_layers == 22
    cfg = BACKBONES.build("tiny", {"n_layers": 3}, max_len=64)
    assert (cfg.n_layers, cfg.max_len, cfg.hidden) == (3, 64, PRESETS["tiny"].hidden)
    with pytest.raises(TypeError, match=r"'layers'.*accepts: vocab_size, n_layers"):
        BACKBONES.build("micro", {"layers": 3})
    with pytest.raises(ValueError, match="divisible"):
        BACKBONES.build("micro", {"heads": 5})


def test_nt_v2_50m_layer_shapes() -> None:
    with torch.device("meta"):
        model = NTv2Encoder(BACKBONES.build("nt-v2-50m"))
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert len(model.layers) == 12
    assert shapes["embeddings.word_embeddings.weight"] == (4107, 512)
    for proj in ("query", "key", "value", "output"):
        assert shapes[f"layers.11.attention.{proj}.weight"] == (512, 512)
        assert shapes[f"layers.11.attention.{proj}.bias"] == (512,)
    assert shapes["layers.0.ffn.gate_up.weight"] == (2 * 2048, 512)
    assert shapes["layers.0.ffn.down.weight"] == (512, 2048)
    assert "layers.0.ffn.gate_up.bias" not in shapes
    assert shapes["final_norm.weight"] == (512,)


def test_parameter_names_map_one_to_one_onto_hf_nt_v2() -> None:
    with torch.device("meta"):
        names = {n for n, _ in NTv2Encoder(PRESETS["micro"]).named_parameters()}
        head = {n for n, _ in LMHead(PRESETS["micro"]).named_parameters()}
    per_layer = [f"attention.{p}" for p in ("query", "key", "value", "output")]
    per_layer += ["attention_norm", "ffn_norm"]
    per_layer = [f"{m}.{w}" for m in per_layer for w in ("weight", "bias")]
    per_layer += ["ffn.gate_up.weight", "ffn.down.weight"]  # no biases in the FFN
    expected = {"embeddings.word_embeddings.weight", "final_norm.weight", "final_norm.bias"}
    expected |= {f"layers.{i}.{n}" for i in range(2) for n in per_layer}
    assert names == expected
    assert head == {
        "dense.weight", "dense.bias", "layer_norm.weight", "layer_norm.bias", "decoder.weight",
        "bias",
    }  # fmt: skip


def test_parameter_count_matches_nt_v2_50m() -> None:
    """Derive NT v2 50M's count from its HF parameter list (REFERENCES.md) and compare."""
    h, ffn, vocab, layers, positions = 512, 2048, 4107, 12, 2050
    linear_with_bias = h * h + h
    layer_norm = 2 * h
    per_layer = (
        3 * linear_with_bias  # attention.self.{query,key,value}
        + linear_with_bias  # attention.output.dense
        + layer_norm  # attention.LayerNorm
        + h * 2 * ffn  # intermediate.dense (no bias)
        + ffn * h  # output.dense (no bias)
        + layer_norm  # LayerNorm (before the FFN)
    )
    nt_encoder = (
        vocab * h  # embeddings.word_embeddings
        + positions * h  # embeddings.position_embeddings: present, unused with rotary
        + layers * per_layer
        + layer_norm  # encoder.emb_layer_norm_after
    )
    nt_head = linear_with_bias + layer_norm + h * vocab + vocab  # dense, layer_norm, decoder, bias
    nt_total = nt_encoder + nt_head
    assert nt_total == 55_904_779
    assert round(nt_total / 1e6, 1) == 55.9  # the reported size

    cfg = BACKBONES.build("nt-v2-50m")
    assert count_parameters(cfg) + positions * h == nt_total
    assert count_parameters(cfg, include_head=False) + positions * h == nt_encoder


def test_rotary_convention_by_hand() -> None:
    """Rotate-half over the full head dim, frequency base^(-2i/d) for pair (i, i + d/2)."""
    rot = Rotary(head_dim=4, base=100.0)
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).expand(3, 4)  # one vector at positions 0, 1, 2
    out = rot(x)
    torch.testing.assert_close(out[0], x[0])
    for pos in (1, 2):
        a0, a1 = pos * 1.0, pos * 100.0 ** (-2 / 4)  # angles of pairs (0, 2) and (1, 3)
        expected = torch.tensor([
            1 * math.cos(a0) - 3 * math.sin(a0),
            2 * math.cos(a1) - 4 * math.sin(a1),
            3 * math.cos(a0) + 1 * math.sin(a0),
            4 * math.cos(a1) + 2 * math.sin(a1),
        ])  # fmt: skip
        torch.testing.assert_close(out[pos], expected)


def test_rotary_scores_depend_only_on_relative_position() -> None:
    gen = torch.Generator().manual_seed(0)
    length, dim, shift = 40, 16, 7
    rot = Rotary(dim, 10000.0)
    q = rot(torch.randn(dim, generator=gen).expand(length, dim))
    k = rot(torch.randn(dim, generator=gen).expand(length, dim))
    scores = q @ k.T  # scores[i, j] = rot_i(q) . rot_j(k)
    torch.testing.assert_close(scores[:-shift, :-shift], scores[shift:, shift:])
    assert scores[0].std() > 0.1  # the scores do vary with the offset j - i


def test_swiglu_splits_gate_then_up() -> None:
    cfg = BackboneConfig(n_layers=1, hidden=2, heads=1, ffn=3, max_len=8)
    ffn = SwiGLU(cfg)
    gate = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    up = torch.tensor([[2.0, -1.0], [0.5, 0.5], [-1.0, 3.0]])
    down = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 1.0]])
    with torch.no_grad():
        ffn.gate_up.weight.copy_(torch.cat([gate, up]))
        ffn.down.weight.copy_(down)
    x = torch.tensor([[0.3, -1.2], [2.0, 0.5]])
    expected = (F.silu(x @ gate.T) * (x @ up.T)) @ down.T
    swapped = (F.silu(x @ up.T) * (x @ gate.T)) @ down.T
    torch.testing.assert_close(ffn(x), expected)
    assert not torch.allclose(expected, swapped)


def test_padding_does_not_change_real_positions(micro) -> None:
    cfg, model = micro
    ids = random_ids(cfg, 2, 10)
    with torch.no_grad():
        clean = model(ids)
        padded = torch.cat([ids, random_ids(cfg, 2, 5, seed=2)], dim=1)
        mask = torch.arange(15) < 10
        out = model(padded, attention_mask=mask.expand(2, 15))
        torch.testing.assert_close(out[:, :10], clean)
        # ragged batch: row 1 has 7 real tokens
        ragged = torch.stack([torch.arange(10) < 10, torch.arange(10) < 7])
        out = model(ids, attention_mask=ragged)
        torch.testing.assert_close(out[1, :7], model(ids[1:, :7])[0])
        torch.testing.assert_close(out[0], clean[0])
        assert model(ids, attention_mask=torch.zeros_like(ids, dtype=torch.bool)).isfinite().all()


def test_causal_position_ignores_later_tokens(micro) -> None:
    cfg, model = micro
    ids = random_ids(cfg, 2, 12)
    changed = ids.clone()
    changed[:, 6:] = random_ids(cfg, 2, 6, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(
            model(ids, causal=True)[:, :6], model(changed, causal=True)[:, :6]
        )
        assert not torch.allclose(model(ids)[:, :6], model(changed)[:, :6])
        # causal together with padding: same as the shorter sequence run causally
        mask = (torch.arange(12) < 9).expand(2, 12)
        torch.testing.assert_close(
            model(ids, attention_mask=mask, causal=True)[:, :9], model(ids[:, :9], causal=True)
        )


def test_at_computes_the_same_states_at_the_asked_positions_only(micro) -> None:
    cfg, model = micro
    ids = random_ids(cfg, 3, 12)
    at = torch.rand(3, 12, generator=torch.Generator().manual_seed(4)) < 0.3
    at[1] = False  # a row with nothing asked
    at[2, -1] = True
    ragged = torch.stack([torch.arange(12) < n for n in (12, 9, 12)])
    seen: list[torch.Size] = []
    hook = model.layers[-1].ffn.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    with torch.no_grad():
        torch.testing.assert_close(model(ids, at=at), model(ids)[at], rtol=0, atol=1e-5)
        torch.testing.assert_close(
            model(ids, attention_mask=ragged, at=at),
            model(ids, attention_mask=ragged)[at],
            rtol=0,
            atol=1e-5,
        )
        assert model(ids, at=torch.zeros_like(at)).shape == (0, cfg.hidden)
        with pytest.raises(ValueError, match="bidirectional"):
            model(ids, at=at, causal=True)
    hook.remove()
    assert seen[0] == (int(at.sum()), cfg.hidden)  # the last block ran on the asked rows only


def test_bf16_autocast_close_to_fp32(micro) -> None:
    cfg, model = micro
    head = LMHead(cfg).eval()
    ids = random_ids(cfg, 2, 16)
    with torch.no_grad():
        ref = model(ids)
        ref_logits = head(ref)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(ids)
            low_logits = head(low)
    assert not torch.equal(low, ref)  # autocast did lower the precision somewhere
    # hidden states are LayerNorm outputs of unit scale; bf16 keeps ~3 significant digits
    torch.testing.assert_close(low.float(), ref, atol=3e-2, rtol=0)
    torch.testing.assert_close(low_logits.float(), ref_logits, atol=1e-2, rtol=0)


def test_lm_head_on_any_leading_shape(micro) -> None:
    cfg, _ = micro
    head = LMHead(cfg)
    h = torch.randn(2, 3, cfg.hidden)
    logits = head(h)
    assert logits.shape == (2, 3, cfg.vocab_size)
    torch.testing.assert_close(head(h[1, 2]), logits[1, 2])
    torch.testing.assert_close(head(h.flatten(0, 1)).view(2, 3, -1), logits)


def test_rejects_sequences_longer_than_max_len() -> None:
    model = NTv2Encoder(BACKBONES.build("micro", max_len=4))
    with pytest.raises(ValueError, match="max_len 4"):
        model(torch.zeros(1, 5, dtype=torch.long))
