"""``sample.autocast: auto`` (bf16 only where the training probe finds it native) and the
provenance sidecar beside every FASTA the sample stage writes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import pathlib
from pathlib import Path

import pytest
import torch
from badinput import clear_error
from conftest import micro_config
from omegaconf import DictConfig

from d3lm import precision
from d3lm.config import load_config, load_run_config
from d3lm.data.fasta import write_fasta
from d3lm.errors import D3lmError
from d3lm.model import PRESETS as SIZES
from d3lm.model import LMHead, NTv2Encoder
from d3lm.preflight import check_run_config
from d3lm.registry import SAMPLERS
from d3lm.rundir import RunDir, provenance_of
from d3lm.sampling import NetworkDenoiser, Sampler
from d3lm.sampling.causal import network_denoiser
from d3lm.stages import sample as sample_stage
from d3lm.stages.checkpoints import load_model
from d3lm.stages.sample import free_tokens, resolve_symbols, sample, sampler_params
from d3lm.stages.train import train

EMULATED = (3e-3, 0.3)  # fp32 and bf16 seconds of an AVX2 CPU: bf16 0.01x fp32
NATIVE = (4e-3, 1e-3)  # AVX-512 BF16 / AMX: bf16 4x fp32
#: (encoder timings, what auto samples in, the reason's start)
OUTCOMES = [
    (NATIVE, "bfloat16", "bf16 matmul 4.00x fp32 on Test CPU 9000"),
    (EMULATED, "float32", "bf16 matmul 0.01x fp32 on Test CPU 9000"),
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Tiny tensors: threads only contend (and outputs are compared bitwise)."""


@pytest.fixture(scope="module")
def run(dna_table: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A micro run trained 2 steps in fp32 (its precision pinned: only sampling varies here)."""
    root = tmp_path_factory.mktemp("autocast")
    cfg = micro_config(
        dna_table, root, "experiment=a", "run=r", "trainer.max_steps=2", "trainer.precision=32-true"
    )
    return train(cfg)


def config(run: Path, cache: Path, *overrides: str) -> DictConfig:
    """The run's config sampling 6 x 60 bp in batches of 3, in this process."""
    settings = ["sample.n=6", "sample.bp=60", "sample.batch_size=3", "sample.workers=1"]
    more = ["sample.progress=false", "sample.sampler.params.steps=8", f"cache_dir={cache}"]
    return load_run_config(run, [*settings, *more, *overrides])


@pytest.fixture
def timings(monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[float, float]]:
    """Fake probe matmul timings (``seconds``: fp32, bf16) on a CPU without CUDA; the
    machine's own outcome and ``make test``'s forced one are both set aside."""
    fake = {"seconds": EMULATED}
    monkeypatch.delenv(precision.FORCE_ENV, raising=False)
    monkeypatch.setattr(
        precision,
        "matmul_seconds",
        lambda dtype, size=512: fake["seconds"][dtype == torch.bfloat16],
    )
    monkeypatch.setattr(precision, "cpu_model", lambda: "Test CPU 9000")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return fake


@pytest.fixture
def encoder_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, torch.dtype]]:
    """The CPU autocast state and the first feed-forward output dtype at every network call of
    ``sample`` (which loads its model through ``load_model``)."""
    seen: list[tuple[bool, torch.dtype]] = []
    real = sample_stage.load_model

    def loading(run_dir: Path, checkpoint: Path | None = None):
        model = real(run_dir, checkpoint)
        model.encoder.layers[0].ffn.register_forward_hook(
            lambda m, i, out: seen.append((torch.is_autocast_enabled("cpu"), out.dtype))
        )
        return model

    monkeypatch.setattr(sample_stage, "load_model", loading)
    return seen


def sidecar(fasta: Path) -> dict:
    return json.loads(provenance_of(fasta).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------ resolution


@pytest.mark.parametrize(("seconds", "dtype", "reason"), OUTCOMES)
def test_auto_asks_what_training_asks(timings, tmp_path, seconds, dtype, reason):
    timings["seconds"] = seconds
    chosen = precision.sample_autocast("auto", "cpu", tmp_path)
    assert chosen.name == dtype and chosen.reason.startswith(reason)
    trained = precision.resolve("auto", "cpu", tmp_path)  # the same probe, from its cache now
    assert (trained.precision == "bf16-mixed") == (dtype == "bfloat16")
    assert chosen.reason == trained.reason
    assert chosen.line().startswith(f"sample.autocast auto -> {dtype}: {reason}")


@pytest.mark.parametrize("forced", precision.OUTCOMES)
def test_the_environment_pins_auto(timings, monkeypatch, forced):
    timings["seconds"] = EMULATED if forced == "bf16-mixed" else NATIVE  # the other outcome
    monkeypatch.setenv(precision.FORCE_ENV, forced)
    chosen = precision.sample_autocast("auto", "cpu", None)
    assert chosen.dtype == (torch.bfloat16 if forced == "bf16-mixed" else None)
    assert chosen.reason == f"forced by {precision.FORCE_ENV}"


def test_named_values_pass_through_without_a_probe(timings, monkeypatch):
    monkeypatch.setattr(precision, "cpu_probe", lambda *a: pytest.fail("probed"))
    assert precision.sample_autocast(None, "cpu", None) == precision.Autocast(None, None)
    assert precision.sample_autocast("bfloat16", "cpu", None).dtype == torch.bfloat16
    assert precision.sample_autocast("float16", "cuda", None).dtype == torch.float16


def test_the_sidecar_is_named_beside_its_fasta():
    assert provenance_of(Path("r/samples.fasta")) == Path("r/samples.json")
    assert provenance_of(Path("out/gen.fa")) == Path("out/gen.json")
    assert provenance_of(Path("gen")) == Path("gen.json")
    assert provenance_of(Path("x.json")) == Path("x.json.json")  # never the FASTA itself
    assert provenance_of(RunDir("r").samples) == Path("r/samples.json")


# ------------------------------------------------------------------------------ sampling


@pytest.mark.parametrize(("seconds", "dtype", "reason"), OUTCOMES)
def test_auto_samples_in_bf16_only_where_native(
    run, tmp_path, timings, encoder_calls, caplog, monkeypatch, seconds, dtype, reason
):
    timings["seconds"] = seconds
    monkeypatch.setattr(logging.getLogger("lightning.pytorch"), "propagate", True)
    with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
        out = sample(config(run, tmp_path, "sample.autocast=auto"), run, out=tmp_path / "auto.fa")
    native = dtype == "bfloat16"
    assert encoder_calls and all(
        c == (native, torch.bfloat16 if native else torch.float32) for c in encoder_calls
    )
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sample.autocast")]
    assert len(lines) == 1 and lines[0].startswith(f"sample.autocast auto -> {dtype}: {reason}")
    assert sidecar(out)["autocast"] == {
        "requested": "auto",
        "dtype": dtype,
        "reason": lines[0].split(": ", 1)[1],
    }
    # auto is exactly the named choice: the same file bfloat16 or null writes
    named = "bfloat16" if native else "null"
    same = sample(config(run, tmp_path, f"sample.autocast={named}"), run, out=tmp_path / "named.fa")
    assert out.read_bytes() == same.read_bytes()
    assert sidecar(same)["autocast"] == {
        "requested": None if named == "null" else named,
        "dtype": dtype,
        "reason": None,
    }


def test_auto_follows_what_training_picks_on_this_machine(run, tmp_path, encoder_calls):
    """Unmocked: this machine's probe, or in ``make test``'s second pass the other outcome
    (``conftest`` records this test as one that resolves ``auto``)."""
    cache = tmp_path / "cache"
    out = sample(config(run, cache, "sample.autocast=auto"), run, out=tmp_path / "s.fa")
    trained = precision.resolve("auto", "cpu", cache)
    native = trained.precision == "bf16-mixed"
    assert {c[0] for c in encoder_calls} == {native}
    assert sidecar(out)["autocast"]["dtype"] == ("bfloat16" if native else "float32")
    assert sidecar(out)["autocast"]["reason"] == trained.reason


def test_null_never_autocasts_and_writes_what_plain_fp32_sampling_writes(
    run, tmp_path, encoder_calls, monkeypatch
):
    monkeypatch.setattr(torch, "autocast", lambda *a, **k: pytest.fail("entered autocast"))
    cfg = config(run, tmp_path)
    assert cfg.sample.autocast is None  # base.yaml's default
    out = sample(cfg, run, out=tmp_path / "null.fa")
    assert encoder_calls and all(c == (False, torch.float32) for c in encoder_calls)

    # the same draws, written out by hand: the network in fp32, no autocast anywhere
    model = load_model(run)
    tok = model.tokenizer
    cfg = cfg.copy()
    resolve_symbols(cfg, tok)
    den = network_denoiser(model.encoder, model.head, model.objective, tok.mask_id, tok.vocab_size)
    sampler = SAMPLERS.build(cfg.sample.sampler.name, sampler_params(cfg))
    ids = sampler.sample(den, 6, tok.layout(60), seed=0, batch_size=3)
    expected = tmp_path / "expected.fa"
    write_fasta(expected, ((f"a/r/{i}", tok.decode(row)) for i, row in enumerate(ids)))
    assert out.read_bytes() == expected.read_bytes()
    assert sidecar(out)["autocast"] == {"requested": None, "dtype": "float32", "reason": None}


def test_the_sidecar_says_how_and_at_what_cost(run, tmp_path):
    cfg = config(run, tmp_path, "sample.sampler.params.steps=per_token", "sample.seed=3")
    trace = tmp_path / "trace.pt"
    out = sample(cfg, run, out=tmp_path / "gen.fa", trace=trace)
    info = sidecar(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen.fa", "gen.json", "trace.pt"]
    tokens = free_tokens(load_model(run).tokenizer.layout(60))
    assert info["sampler"]["name"] == "random"
    params = info["sampler"]["params"]
    assert params["steps"] == tokens  # per_token, as its number
    assert params["temperature"] == 1.1 and params["order"] == "random"  # the preset's axes
    assert (info["n"], info["bp"], info["seed"], info["batch_size"]) == (6, 60, 3, 3)
    assert (info["device"], info["workers"]) == ("cpu", 1)
    assert info["wall_s"] > 0
    assert info["nfe_mean"] == float(torch.load(trace)["nfe"].double().mean())  # the sampler's
    assert info["nfe_mean"] == tokens  # random order, one token a step: one call a step
    assert info["fasta_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    machine = info["machine"]
    assert machine["torch"] == torch.__version__ and machine["cpu"] == precision.cpu_model()
    assert machine["cpu_flags"] == {f: f in precision.bf16_flags() for f in precision.BF16_FLAGS}
    assert machine["gpu"] is None


def test_a_failed_sidecar_write_leaves_the_old_pair_and_no_partial_file(run, tmp_path, monkeypatch):
    out = sample(config(run, tmp_path), run, out=tmp_path / "s" / "samples.fasta")
    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    assert sorted(before) == ["samples.fasta", "samples.json"]

    def half_then_full_disk(self: pathlib.Path, text: str, *args, **kwargs) -> int:
        with open(self, "w") as handle:
            handle.write(text[: len(text) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_text", half_then_full_disk)
    with pytest.raises(OSError, match="No space left"):
        sample(config(run, tmp_path, "sample.seed=9"), run, out=out)
    with pytest.raises(OSError, match="No space left"):  # a new file: no half of the pair
        sample(config(run, tmp_path), run, out=tmp_path / "new" / "gen.fa")
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == before  # no temp files
    assert list((tmp_path / "new").iterdir()) == []


# ------------------------------------------------------------------------------ bad values


@pytest.mark.parametrize("value", ["fp8", "bf16", "float32", "true", "[bfloat16]"])
def test_a_bad_value_is_one_line_before_any_model_loads(value, run, tmp_path, capsys):
    known = "use one of null, bfloat16, float16, auto"
    cfg = load_config("micro", overrides=[f"sample.autocast={value}", f"cache_dir={tmp_path}"])
    with pytest.raises(D3lmError, match=rf"^sample\.autocast=.*: {known}$"):
        sample(cfg, tmp_path / "no-run")  # fails before it looks for a checkpoint
    with pytest.raises(D3lmError, match=known):
        check_run_config(cfg)  # a grid or sweep refuses it before anything trains
    before = sorted(p.name for p in run.iterdir())
    message, _ = clear_error(["sample", str(run), f"sample.autocast={value}"], capsys)
    assert "sample.autocast=" in message and known in message
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written


# ------------------------------------------------------------------------------ the denoiser


def test_logits_are_fp32_under_bf16_autocast():
    cfg = dataclasses.replace(SIZES["micro"], vocab_size=24)
    torch.manual_seed(0)
    encoder, head = NTv2Encoder(cfg).eval(), LMHead(cfg).eval()
    ids = torch.randint(4, 24, (3, 12), generator=torch.Generator().manual_seed(1))
    ref = NetworkDenoiser(encoder, head, 1, 24)
    low = NetworkDenoiser(encoder, head, 1, 24, autocast=torch.bfloat16)
    blocks: list[torch.dtype] = []
    hook = encoder.layers[0].ffn.register_forward_hook(lambda m, i, out: blocks.append(out.dtype))
    logits = low.logits(low.features(ids))
    hook.remove()
    assert blocks == [torch.bfloat16]  # the network did run in bf16
    assert logits.dtype == torch.float32
    exact = ref.logits(ref.features(ids))
    assert not torch.equal(logits, exact)
    assert torch.isneginf(logits[..., 1]).all()  # the mask is never predicted
    torch.testing.assert_close(logits[..., 4:], exact[..., 4:], atol=0.1, rtol=0.05)
    allowed = torch.ones(24, dtype=torch.bool)
    allowed[:4] = False
    probs = Sampler()._probs(logits, allowed)  # what the draws read: softmax in float64
    assert probs.dtype == torch.float64
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 12, dtype=torch.float64))
