"""NT v2 weights in and out: a HuggingFace-named random checkpoint imports with no missing or
unexpected tensor, its logits match a forward written here from the published architecture, and
import then export gives every tensor back bit for bit; what the backbone cannot represent is
refused, naming the file and key."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from d3lm.cli import main
from d3lm.config import load_config
from d3lm.data.fasta import read_fasta
from d3lm.errors import D3lmError
from d3lm.interop.nt_v2 import export_nt, import_nt, write_run
from d3lm.stages.checkpoints import load_model, read_checkpoint
from d3lm.stages.train import build_model

#: NT v2's vocabulary, spelled out from REFERENCES.md rather than taken from the tokenizer.
VOCAB = [
    *("<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"),
    *("".join(p) for p in itertools.product("ATCG", repeat=6)),
    *"ATCGN",
]
CLS, PAD = 3, 1
LAYERS, HIDDEN, HEADS, FFN, POSITIONS = 2, 64, 4, 128, 2050


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Tiny tensors: threads only contend."""


def nt_config(**changes: object) -> dict[str, object]:
    """An NT v2 ``config.json`` (the 50M model's keys and values) at a small width and depth."""
    config: dict[str, object] = {
        "add_bias_fnn": False,
        "architectures": ["EsmForMaskedLM"],
        "attention_probs_dropout_prob": 0.0,
        "auto_map": {
            "AutoConfig": "esm_config.EsmConfig",
            "AutoModelForMaskedLM": "modeling_esm.EsmForMaskedLM",
        },
        "emb_layer_norm_before": False,
        "esmfold_config": None,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": FFN,
        "is_folding_model": False,
        "layer_norm_eps": 1e-12,
        "mask_token_id": 2,
        "max_position_embeddings": POSITIONS,
        "model_type": "esm",
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "pad_token_id": PAD,
        "position_embedding_type": "rotary",
        "tie_word_embeddings": False,
        "token_dropout": False,
        "torch_dtype": "float32",
        "transformers_version": "4.32.0.dev0",
        "use_cache": False,
        "vocab_list": None,
        "vocab_size": len(VOCAB),
    }
    config.update(changes)
    return config


def hf_state_dict(seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """Random tensors under NT v2's ``EsmForMaskedLM`` names (REFERENCES.md), scaled so that
    every layer moves the logits (a misplaced tensor cannot hide)."""
    g = torch.Generator().manual_seed(seed)
    h, v = HIDDEN, len(VOCAB)

    def matrix(rows: int, cols: int) -> Tensor:
        return torch.randn(rows, cols, generator=g) / math.sqrt(cols)

    def vector(n: int, around: float = 0.0) -> Tensor:
        return around + 0.2 * torch.randn(n, generator=g)

    w = {
        "esm.embeddings.word_embeddings.weight": torch.randn(v, h, generator=g),
        "esm.embeddings.position_embeddings.weight": torch.randn(POSITIONS, h, generator=g),
    }
    for i in range(LAYERS):
        p = f"esm.encoder.layer.{i}."
        for proj in ("query", "key", "value"):
            w[f"{p}attention.self.{proj}.weight"] = matrix(h, h)
            w[f"{p}attention.self.{proj}.bias"] = vector(h)
        w[f"{p}attention.output.dense.weight"] = matrix(h, h)
        w[f"{p}attention.output.dense.bias"] = vector(h)
        w[f"{p}attention.LayerNorm.weight"] = vector(h, 1.0)
        w[f"{p}attention.LayerNorm.bias"] = vector(h)
        w[f"{p}intermediate.dense.weight"] = matrix(2 * FFN, h)
        w[f"{p}output.dense.weight"] = matrix(h, FFN)
        w[f"{p}LayerNorm.weight"] = vector(h, 1.0)
        w[f"{p}LayerNorm.bias"] = vector(h)
    w["esm.encoder.emb_layer_norm_after.weight"] = vector(h, 1.0)
    w["esm.encoder.emb_layer_norm_after.bias"] = vector(h)
    w["lm_head.dense.weight"] = matrix(h, h)
    w["lm_head.dense.bias"] = vector(h)
    w["lm_head.layer_norm.weight"] = vector(h, 1.0)
    w["lm_head.layer_norm.bias"] = vector(h)
    w["lm_head.decoder.weight"] = matrix(v, h)
    w["lm_head.bias"] = vector(v)
    return {name: t.to(dtype) for name, t in w.items()}


def write_nt_dir(
    path: Path,
    config: dict[str, object] | None = None,
    weights: dict[str, Tensor] | None = None,
    fmt: str = "safetensors",
    vocab: list[str] = VOCAB,
) -> Path:
    """A HuggingFace NT v2 folder, config.json in HF's own layout (indent 2, sorted keys)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(
        json.dumps(config or nt_config(), indent=2, sort_keys=True) + "\n"
    )
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    weights = hf_state_dict() if weights is None else weights
    if fmt == "safetensors":
        save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    else:
        torch.save(weights, path / "pytorch_model.bin")
    return path


def reference_logits(w: dict[str, Tensor], eps: float, ids: Tensor, real: Tensor) -> Tensor:
    """NT v2's masked-LM forward in float64 from the HF-named tensors, written from the published
    architecture: pre-LN blocks, q scaled by head_dim^-0.5 then rotary (base 10000, rotate-half,
    full head dim), SwiGLU with silu on the first half, final LayerNorm, ESM LM head with exact
    GELU. ``real`` (B, L) marks the keys that may be attended to."""
    w = {k: t.double() for k, t in w.items()}
    b, length = ids.shape
    d = HIDDEN // HEADS
    x = w["esm.embeddings.word_embeddings.weight"][ids]
    inv_freq = 1.0 / 10000 ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = torch.arange(length, dtype=torch.float64)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)

    def rotary(t: Tensor) -> Tensor:
        first, second = t[..., : d // 2], t[..., d // 2 :]
        return t * angles.cos() + torch.cat([-second, first], dim=-1) * angles.sin()

    def norm(t: Tensor, name: str) -> Tensor:
        mean = t.mean(-1, keepdim=True)
        var = ((t - mean) ** 2).mean(-1, keepdim=True)
        return (t - mean) / torch.sqrt(var + eps) * w[f"{name}.weight"] + w[f"{name}.bias"]

    def heads(t: Tensor) -> Tensor:
        return t.view(b, length, HEADS, d).transpose(1, 2)

    for i in range(LAYERS):
        p = f"esm.encoder.layer.{i}."
        hn = norm(x, f"{p}attention.LayerNorm")
        q, k, v = (
            heads(hn @ w[f"{p}attention.self.{n}.weight"].T + w[f"{p}attention.self.{n}.bias"])
            for n in ("query", "key", "value")
        )
        q, k = rotary(q * d**-0.5), rotary(k)
        scores = (q @ k.transpose(-1, -2)).masked_fill(~real[:, None, None, :], -math.inf)
        context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, length, HIDDEN)
        x = x + context @ w[f"{p}attention.output.dense.weight"].T
        x = x + w[f"{p}attention.output.dense.bias"]
        hn = norm(x, f"{p}LayerNorm")
        gate_up = hn @ w[f"{p}intermediate.dense.weight"].T
        gate, up = gate_up[..., :FFN], gate_up[..., FFN:]
        x = x + (gate * torch.sigmoid(gate) * up) @ w[f"{p}output.dense.weight"].T
    x = norm(x, "esm.encoder.emb_layer_norm_after")
    y = x @ w["lm_head.dense.weight"].T + w["lm_head.dense.bias"]
    y = norm(y * 0.5 * (1 + torch.erf(y / math.sqrt(2))), "lm_head.layer_norm")
    return y @ w["lm_head.decoder.weight"].T + w["lm_head.bias"]


def token_batch(seed: int = 1) -> tuple[Tensor, Tensor]:
    """Three rows of random 6-mer / nucleotide ids behind ``<cls>``; the last row ends in pads."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(6, len(VOCAB), (3, 40), generator=g)
    ids[:, 0] = CLS
    ids[2, 30:] = PAD
    return ids, ids != PAD


def read_nt_dir(path: Path) -> tuple[dict[str, Tensor], dict[str, object], str]:
    weights = (
        load_file(path / "model.safetensors")
        if (path / "model.safetensors").exists()
        else torch.load(path / "pytorch_model.bin", weights_only=True)
    )
    return weights, json.loads((path / "config.json").read_text()), (path / "vocab.txt").read_text()


@pytest.mark.parametrize(("fmt", "eps"), [("safetensors", 1e-12), ("bin", 1e-3)])
def test_imported_logits_match_the_reference_forward(tmp_path: Path, fmt: str, eps: float) -> None:
    """eps 1e-3 as well, so that an eps not taken from config.json would show."""
    weights = hf_state_dict()
    nt_dir = write_nt_dir(tmp_path / "nt", nt_config(layer_norm_eps=eps), weights, fmt)
    checkpoint = import_nt(nt_dir)
    run = write_run(checkpoint, tmp_path / "run")
    model = load_model(run)  # strict: a missing or unexpected tensor is an error here
    assert set(checkpoint["state_dict"]) == set(model.state_dict())
    assert model.backbone_config.layer_norm_eps == eps
    assert checkpoint["global_step"] == 0
    assert checkpoint["hyper_parameters"]["tokenizer"]["name"] == "nt6mer"
    ids, real = token_batch()
    with torch.no_grad():
        ours = model(ids, real).double()
    expected = reference_logits(weights, eps, ids, real)
    assert expected[real].abs().max() > 1.0  # logits large enough for an error to show
    torch.testing.assert_close(ours[real], expected[real], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("source", "dtype", "fmt"),
    [("safetensors", torch.float32, "safetensors"), ("bin", torch.bfloat16, "bin")],
)
def test_import_then_export_is_bit_for_bit(
    tmp_path: Path, source: str, dtype: torch.dtype, fmt: str
) -> None:
    weights = hf_state_dict(seed=2, dtype=dtype)
    config = nt_config(torch_dtype=str(dtype).removeprefix("torch."))
    nt_dir = write_nt_dir(tmp_path / "nt", config, weights, source)
    run = write_run(import_nt(nt_dir), tmp_path / "run")
    last = run / "checkpoints" / "last.ckpt"
    out = export_nt(read_checkpoint(last), tmp_path / "out", fmt, source=last)
    back, back_config, back_vocab = read_nt_dir(out)
    assert set(back) == set(weights)  # the unused position table included
    for name, tensor in weights.items():
        assert back[name].dtype == tensor.dtype, name
        assert torch.equal(back[name], tensor), name
    assert back_config == config
    assert (out / "config.json").read_bytes() == (nt_dir / "config.json").read_bytes()
    assert back_vocab == (nt_dir / "vocab.txt").read_text()


def test_tied_and_nucleotide_embeddings_export_to_the_same_logits(tmp_path: Path) -> None:
    """The suite's embedding options fold into NT v2's untied tables with the same outputs."""
    cfg = load_config(
        "micro",
        overrides=["model.params.tie_embeddings=true", "model.params.nucleotide_embeddings=true"],
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    out = export_nt(checkpoint, tmp_path / "out")
    weights, config, _ = read_nt_dir(out)
    assert config["tie_word_embeddings"] is False
    assert config["max_position_embeddings"] == model.backbone_config.max_len + PAD + 1
    assert not any("position_embeddings" in name for name in weights)
    imported = load_model(write_run(import_nt(out), tmp_path / "run"))
    ids, real = token_batch()
    with torch.no_grad():
        torch.testing.assert_close(
            imported(ids, real)[real], model(ids, real)[real], atol=1e-5, rtol=0
        )


def _wrong_shape(w: dict[str, Tensor]) -> None:
    w["esm.encoder.layer.1.attention.self.key.weight"] = torch.zeros(HIDDEN, HIDDEN // 2)


def _missing(w: dict[str, Tensor]) -> None:
    del w["lm_head.bias"]


def _unexpected(w: dict[str, Tensor]) -> None:
    w["esm.pooler.dense.weight"] = torch.zeros(HIDDEN, HIDDEN)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            _wrong_shape,
            r"layer\.1\.attention\.self\.key\.weight has shape \(64, 32\).*needs \(64, 64\)",
        ),
        (_missing, r"1 missing \(first: lm_head\.bias\)"),
        (_unexpected, r"1 unexpected \(first: esm\.pooler\.dense\.weight\)"),
    ],
)
def test_weights_that_do_not_fit_are_refused_by_name(tmp_path: Path, change, message: str) -> None:
    weights = hf_state_dict()
    change(weights)
    with pytest.raises(D3lmError, match=r"model\.safetensors: .*" + message):
        import_nt(write_nt_dir(tmp_path, weights=weights))


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"position_embedding_type": "absolute"}, "position_embedding_type"),
        ({"add_bias_fnn": True}, "add_bias_fnn"),
        ({"emb_layer_norm_before": True}, "emb_layer_norm_before"),
        ({"token_dropout": True}, "token_dropout"),
        ({"tie_word_embeddings": True}, "tie_word_embeddings"),
        ({"vocab_size": 4108}, "vocab_size"),
        ({"hidden_dropout_prob": 0.1}, "hidden_dropout_prob"),
        ({"num_attention_heads": 5}, "divisible"),
        ({"hidden_size": None}, "hidden_size"),
    ],
)
def test_unsupported_config_values_are_refused(tmp_path: Path, changes: dict, key: str) -> None:
    with pytest.raises(D3lmError, match=rf"config\.json: .*{key}"):
        import_nt(write_nt_dir(tmp_path, nt_config(**changes)))


def test_absent_config_key_takes_the_hf_default(tmp_path: Path) -> None:
    config = nt_config()
    del config["add_bias_fnn"]  # NT v2's EsmConfig defaults it to true: biased FFN
    with pytest.raises(D3lmError, match=r"add_bias_fnn is absent \(HF default True\)"):
        import_nt(write_nt_dir(tmp_path, config))


def test_vocabulary_in_another_order_is_refused(tmp_path: Path) -> None:
    vocab = list(VOCAB)
    vocab[6], vocab[7] = vocab[7], vocab[6]
    with pytest.raises(D3lmError, match=r"vocab\.txt: line 7 is 'AAAAAT'; .* has 'AAAAAA'"):
        import_nt(write_nt_dir(tmp_path, vocab=vocab))
    with pytest.raises(D3lmError, match=r"vocab\.txt: 4106 tokens"):
        import_nt(write_nt_dir(tmp_path, vocab=VOCAB[:-1]))


def test_export_refuses_what_nt_v2_cannot_hold(tmp_path: Path) -> None:
    checkpoint = import_nt(write_nt_dir(tmp_path / "nt"))
    hparams = checkpoint["hyper_parameters"]
    kmer3 = {
        **checkpoint,
        "hyper_parameters": {**hparams, "tokenizer": {"name": "kmer", "params": {"k": 3}}},
    }
    with pytest.raises(D3lmError, match="another vocabulary"):
        export_nt(kmer3, tmp_path / "a")
    causal = {"name": "autoregressive", "params": {}}
    ar = {
        **checkpoint,
        "hyper_parameters": {**hparams, "diffusion": {**hparams["diffusion"], "objective": causal}},
    }
    with pytest.raises(D3lmError, match="causal attention"):
        export_nt(ar, tmp_path / "b")
    with pytest.raises(D3lmError, match=r"config\.json exists"):
        export_nt(checkpoint, tmp_path / "nt")  # never over the source weights
    bad = {
        **checkpoint,
        "state_dict": {k: v for k, v in checkpoint["state_dict"].items() if k != "head.bias"},
    }
    with pytest.raises(
        D3lmError,
        match=r"ckpt: tensors do not fit its hyperparameters: 1 missing \(first: head\.bias\)",
    ):
        export_nt(bad, tmp_path / "c", source="x.ckpt")
    assert not (tmp_path / "c").exists()


def test_cli_import_sample_export(tmp_path: Path, capsys) -> None:
    weights = hf_state_dict(seed=3)
    nt_dir = write_nt_dir(tmp_path / "nt", weights=weights, fmt="bin")
    run = tmp_path / "runs" / "nt"
    assert main(["import-nt", str(nt_dir), "--out", str(run)]) == 0
    fasta = tmp_path / "s.fa"
    assert main(["sample", str(run), "--n", "3", "--bp", "20", "--out", str(fasta), "steps=2"]) == 0
    assert [len(seq) for _, seq in read_fasta(fasta)] == [20, 20, 20]
    assert main(["export-nt", str(run), "--out", str(tmp_path / "out"), "--format", "bin"]) == 0
    back, _, _ = read_nt_dir(tmp_path / "out")
    assert all(torch.equal(back[name], t) for name, t in weights.items()) and set(back) == set(
        weights
    )
    capsys.readouterr()
    assert main(["import-nt", str(nt_dir), "--out", str(run)]) == 2  # a run is there already
    assert main(["import-nt", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "holds a run already" in err[0] and "nowhere: no such folder" in err[1]
