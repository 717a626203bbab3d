"""The sampler's ``kv_cache`` axis: ``none`` draws what the sampler drew before the axis existed,
byte for byte; ``dkv`` with ``refresh=1`` is the exact sampler; a larger ``refresh`` makes fewer
full passes; every order, count and remasker, infill, semi-AR blocks and worker slices compose
with it; a denoiser or loop that cannot reuse keys is refused naming both."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
from registered import examples, registered
from torch import Tensor, nn

from d3lm.errors import D3lmError
from d3lm.model import PRESETS as SIZES
from d3lm.model import LMHead, NTv2Encoder
from d3lm.registry import SAMPLERS
from d3lm.sampling import CausalDenoiser, NetworkDenoiser, Sampler
from d3lm.sampling import workers as sampling_workers

# A tokenizer-shaped layout: <pad> <mask> <cls> <unk>, 16 "dimers", 4 single nucleotides.
MASK, CLS, V = 1, 2, 24


def make_layout(n_body: int, n_tail: int = 1) -> Tensor:
    layout = torch.zeros(1 + n_body + n_tail, V, dtype=torch.bool)
    layout[0, CLS] = True
    layout[1 : 1 + n_body, 4:20] = True
    layout[1 + n_body :, 20:24] = True
    return layout


def micro_denoiser(seed: int) -> NetworkDenoiser:
    """A random-init ``micro`` NTv2Encoder + LM head (it has ``forward_kv``)."""
    cfg = dataclasses.replace(SIZES["micro"], vocab_size=V)
    torch.manual_seed(seed)
    return NetworkDenoiser(NTv2Encoder(cfg).eval(), LMHead(cfg).eval(), MASK, V)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Tiny tensors: threads only contend (and outputs are compared bitwise)."""


@pytest.fixture(scope="module")
def micro() -> NetworkDenoiser:
    return micro_denoiser(3)


def dkv(refresh: int, **params: object) -> dict[str, object]:
    return {"kv_cache": "dkv", "kv_cache_params": {"refresh": refresh}, **params}


# ---- kv_cache none: byte-identical to the sampler before the axis ---------------------------

#: Tokens after <cls> and NFE per sequence, drawn by the code before ``kv_cache`` existed
#: (micro encoder seeded 7, layout of 8 dimers + 1 single, 3 sequences, batches of 2, seed 13).
GOLDEN = {
    "ancestral": (
        [[5, 18, 15, 19, 14, 16, 14, 18, 22], [18, 8, 15, 10, 17, 11, 9, 13, 21],
         [4, 14, 15, 12, 16, 17, 10, 15, 20]], [6, 5, 5]),
    "confidence": (
        [[5, 17, 15, 4, 12, 8, 6, 17, 22], [7, 15, 15, 7, 4, 19, 16, 14, 21],
         [9, 9, 18, 12, 18, 9, 10, 12, 20]], [6, 6, 6]),
    "entropy": (
        [[12, 18, 13, 16, 12, 8, 6, 14, 22], [7, 16, 6, 4, 16, 10, 19, 6, 21],
         [15, 8, 18, 11, 9, 9, 10, 9, 20]], [6, 6, 6]),
    "left_to_right": (
        [[6, 18, 13, 19, 14, 16, 17, 15, 22], [18, 8, 5, 4, 9, 19, 11, 6, 21],
         [4, 4, 4, 8, 15, 10, 13, 12, 21]], [9, 9, 9]),
    "margin": (
        [[5, 18, 14, 4, 12, 16, 6, 14, 22], [7, 15, 15, 7, 4, 11, 10, 14, 21],
         [19, 14, 4, 12, 11, 9, 10, 12, 20]], [6, 6, 6]),
    "p2": (
        [[6, 6, 14, 19, 14, 16, 14, 17, 22], [19, 15, 15, 18, 14, 15, 11, 6, 21],
         [9, 4, 4, 9, 14, 9, 7, 15, 20]], [6, 6, 6]),
    "random": (
        [[5, 18, 15, 4, 12, 16, 14, 18, 22], [19, 8, 15, 10, 18, 19, 9, 6, 21],
         [4, 14, 4, 11, 18, 19, 10, 16, 21]], [6, 6, 6]),
    "remdm": (
        [[5, 18, 15, 19, 14, 16, 14, 18, 22], [18, 8, 15, 10, 17, 11, 9, 13, 21],
         [4, 14, 15, 12, 14, 17, 10, 6, 21]], [6, 5, 5]),
    "semi_ar": (
        [[5, 6, 16, 4, 12, 8, 6, 17, 21], [7, 8, 15, 7, 16, 4, 11, 13, 22],
         [19, 6, 15, 12, 9, 9, 10, 6, 21]], [5, 5, 5]),
}  # fmt: skip
#: ``margin`` order, ``threshold`` count 0.3, 6 steps, infilling every third token.
GOLDEN_INFILL = (
    [[8, 14, 13, 19, 9, 8, 4, 15, 22], [18, 4, 5, 18, 12, 19, 16, 9, 21],
     [9, 12, 4, 10, 8, 9, 10, 6, 20]], [6, 6, 6])  # fmt: skip


@pytest.mark.parametrize("explicit", [False, True], ids=["default", "kv_cache=none"])
@pytest.mark.parametrize("preset", sorted(GOLDEN))
def test_no_kv_cache_draws_what_the_sampler_drew_before(preset, explicit):
    den, layout = micro_denoiser(7), make_layout(8)
    params = {} if preset == "left_to_right" else {"steps": 6}
    s = SAMPLERS.build(preset, {**params, **({"kv_cache": "none"} if explicit else {})})
    out = s.sample(den, 3, layout, seed=13, batch_size=2)
    assert (out[:, 1:].tolist(), s.last_run.nfe.tolist()) == GOLDEN[preset]
    assert torch.equal(s.last_run.full, s.last_run.nfe)  # every call a full pass


def test_no_kv_cache_infills_what_the_sampler_infilled_before():
    den, layout = micro_denoiser(7), make_layout(8)
    full = SAMPLERS.build("random", {"steps": 6}).sample(den, 3, layout, seed=1)
    known = torch.zeros_like(full, dtype=torch.bool)
    known[:, 2::3] = True
    s = Sampler("margin", "threshold", count_params={"threshold": 0.3}, steps=6)
    out = s.infill(den, full.masked_fill(~known, MASK), known, layout, seed=13, batch_size=2)
    assert (out[:, 1:].tolist(), s.last_run.nfe.tolist()) == GOLDEN_INFILL


# ---- the encoder's cached path ---------------------------------------------------------------


def test_forward_kv_without_reuse_is_forward_and_reuse_of_unchanged_keys_is_exact(micro):
    enc = micro.encoder
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 20, (5, 17), generator=gen)
    ids[:, 3:9] = MASK
    at = torch.rand(ids.shape, generator=gen) < 0.3
    at[:, 0] = True
    with torch.no_grad():
        exact = enc(ids, at=at)
        feats, kv = enc.forward_kv(ids, at, None, torch.zeros_like(at))
        torch.testing.assert_close(feats, exact)
        assert kv.shape == (5, len(enc.layers), 2, enc.cfg.heads, 17, enc.cfg.head_dim)
        # keys kept for these very ids: reusing them changes nothing
        reuse = (torch.rand(ids.shape, generator=gen) < 0.6) & ~at
        again, kv2 = enc.forward_kv(ids, at, kv.clone(), reuse)
        torch.testing.assert_close(again, exact)
        torch.testing.assert_close(kv2, kv)
        # and they are really taken from the cache: spoilt ones change the states
        spoilt = kv.clone()
        spoilt[reuse.nonzero(as_tuple=True)[0], :, 1] += 1.0
        assert not torch.allclose(enc.forward_kv(ids, at, spoilt, reuse)[0], exact)


# ---- dkv: exact at refresh 1, fewer full passes with a larger refresh -------------------------


@pytest.mark.parametrize("preset", registered("sampler"))
def test_refresh_every_step_is_the_exact_sampler(micro, preset):
    layout, n = make_layout(12), 10
    params = {} if preset == "left_to_right" else {"steps": 8}
    exact = SAMPLERS.build(preset, params)
    ref = exact.sample(micro, n, layout, seed=4, batch_size=4)
    s = SAMPLERS.build(preset, {**params, **dkv(1)})
    assert torch.equal(s.sample(micro, n, layout, seed=4, batch_size=4), ref)
    assert torch.equal(s.last_run.trace, exact.last_run.trace)
    assert torch.equal(s.last_run.full, s.last_run.nfe)


def test_a_larger_refresh_makes_fewer_full_passes_and_computes_fewer_positions(micro):
    """Random order, fixed count: every row calls the network at each of the 8 steps, and a
    full pass comes at steps 0, r, 2r, ...; the first block of the network sees fewer rows."""
    layout, n, steps = make_layout(16), 6, 8
    rows: list[int] = []
    ffn = micro.encoder.layers[0].ffn
    handle = ffn.register_forward_hook(lambda m, i, o: rows.append(len(i[0])))
    computed, full = {}, {}
    try:
        for refresh in (1, 2, 3, 8):
            rows.clear()
            s = Sampler(steps=steps, **dkv(refresh))
            s.sample(micro, n, layout, seed=0)
            assert (s.last_run.nfe == steps).all()
            assert (s.last_run.full == -(-steps // refresh)).all(), refresh
            computed[refresh], full[refresh] = sum(rows), int(s.last_run.full.sum())
    finally:
        handle.remove()
    assert full[1] > full[2] > full[3] > full[8] == n
    assert computed[1] > computed[2] > computed[3] > computed[8]
    assert computed[1] == n * steps * layout.shape[0]  # refresh 1: every position every step


def test_semi_ar_refreshes_when_a_block_completes(micro):
    layout = make_layout(11)  # 13 tokens, blocks of 4: [0,4) [4,8) [8,12) [12,13)
    s = Sampler("confidence", block_length=4, steps=8, **dkv(100))
    s.sample(micro, 3, layout, seed=0)
    assert (s.last_run.full == 4).all()  # one full pass per block, none from the step count


# ---- composition ---------------------------------------------------------------------------

AXES = {"unmask_order": "order", "commit_count": "count", "remasker": "remasker"}
CASES = [
    pytest.param((kind, *axis.values[0], *kv.values[0]), id=f"{kind}-{axis.id}-{kv.id}")
    for kind in AXES
    for axis in examples(kind)
    for kv in examples("kv_cache")
]


@pytest.mark.parametrize("case", CASES)
def test_every_kv_cache_composes_with_every_axis_plugin(micro, case):
    """Legal complete sequences, a function of the seed and a sequence's index only (not of
    the batch size or of the slice a worker gets), and the exact sampler at refresh 1."""
    kind, name, params, kv_name, kv_params = case
    axis = AXES[kind]
    axes = {axis: name, f"{axis}_params": params, "steps": 5}
    s = Sampler(**axes, kv_cache=kv_name, kv_cache_params=kv_params)
    layout = make_layout(8)
    out = s.sample(micro, 12, layout, seed=2, batch_size=12)
    assert (out != MASK).all() and layout.gather(1, out.T).T.all()
    assert torch.equal(s.sample(micro, 12, layout, seed=2, batch_size=5), out)
    assert torch.equal(s.sample(micro, 7, layout, seed=2, batch_size=5, first_index=5), out[5:])
    if kv_params.get("refresh") == 1:
        assert torch.equal(Sampler(**axes).sample(micro, 12, layout, seed=2), out)


def test_dkv_without_the_feature_cache_survives_calls_that_read_nothing(micro):
    """Without ``cache`` every row calls the network every step, also when no row commits
    (ancestral counts): a call that computes keys but reads no position."""
    layout = make_layout(4)
    exact = Sampler(count="ancestral", steps=30, cache=False).sample(micro, 5, layout, seed=0)
    for refresh in (1, 7):
        s = Sampler(count="ancestral", steps=30, cache=False, **dkv(refresh))
        out = s.sample(micro, 5, layout, seed=0)
        assert (s.last_run.nfe == 30).all() and (s.last_run.full == -(-30 // refresh)).all()
        assert (out != MASK).all()
        if refresh == 1:
            assert torch.equal(out, exact)


@pytest.mark.parametrize("refresh", [1, 3])
def test_infill_with_dkv_keeps_known_tokens(micro, refresh):
    layout = make_layout(14)
    ids = Sampler(steps=6).sample(micro, 8, layout, seed=0)
    known = torch.rand(ids.shape, generator=torch.Generator().manual_seed(1)) < 0.4
    prompt = ids.masked_fill(~known, MASK)
    s = Sampler("confidence", steps=6, **dkv(refresh))
    out = s.infill(micro, prompt, known, layout, seed=9, batch_size=3)
    assert torch.equal(out[known], ids[known]) and (out != MASK).all()
    if refresh == 1:
        exact = Sampler("confidence", steps=6).infill(micro, prompt, known, layout, seed=9)
        assert torch.equal(out, exact)


def _worker_job(part: range, refresh: int) -> Tensor:
    """One worker's share (module level: spawned workers unpickle it by name)."""
    torch.set_num_threads(1)
    s = SAMPLERS.build("remdm", {"steps": 8, **dkv(refresh)})
    return s.sample(micro_denoiser(3), len(part), make_layout(8), seed=5, first_index=part.start)


@pytest.mark.slow
def test_two_workers_draw_what_one_process_draws():
    job = functools.partial(_worker_job, refresh=3)
    one = torch.cat(sampling_workers.run(job, 9, workers=1, batch=2))
    two = torch.cat(sampling_workers.run(job, 9, workers=2, batch=2))
    assert torch.equal(one, two)


# ---- refusals --------------------------------------------------------------------------------


class ToyNet(nn.Module):
    """A network without ``forward_kv``."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.head = nn.Embedding(V, 8), nn.Linear(8, V)

    def forward(self, ids: Tensor) -> Tensor:
        return self.emb(ids)


def test_dkv_refuses_the_straightforward_loop():
    with pytest.raises(D3lmError, match=r"kv_cache 'dkv'.*sparse_head=False"):
        Sampler(sparse_head=False, **dkv(2))
    with pytest.raises(D3lmError, match=r"kv_cache 'dkv'.*sparse_head=False"):
        SAMPLERS.build("random", {"sparse_head": False, **dkv(2)})
    Sampler(sparse_head=False, kv_cache="none")  # nothing to refuse


def test_dkv_refuses_a_denoiser_without_cached_keys(micro):
    layout = make_layout(4)
    net = ToyNet()
    causal = CausalDenoiser(micro.encoder, micro.head, MASK, V)
    for den, name in [(NetworkDenoiser(net, net.head, MASK, V), "NetworkDenoiser"),
                      (causal, "CausalDenoiser")]:  # fmt: skip
        with pytest.raises(D3lmError, match=rf"kv_cache 'dkv'.*{name} has none"):
            SAMPLERS.build("left_to_right", dkv(2)).sample(den, 2, layout, seed=0)
    SAMPLERS.build("left_to_right").sample(causal, 2, layout, seed=0)  # fine without the cache


def test_unknown_kv_cache_names_the_known_ones():
    with pytest.raises(D3lmError, match=r"unknown kv_cache 'dvk'.*dkv, none"):
        Sampler(kv_cache="dvk")
    with pytest.raises(D3lmError, match=r"kv_cache 'dkv'.*refresh"):
        Sampler(kv_cache="dkv", kv_cache_params={"refresh": 0})


# ---- configs and grids -----------------------------------------------------------------------


def test_config_keys_build_the_axis_and_a_grid_sweeps_every_kv_cache(tmp_path):
    from omegaconf import OmegaConf

    from d3lm.config import load_config
    from d3lm.experiments import ablation
    from d3lm.preflight import check_run_config
    from d3lm.stages.sample import sampler_params

    keys = ["sample.sampler.params.kv_cache=dkv", "sample.sampler.params.kv_cache_params.refresh=5"]
    cfg = load_config("micro", overrides=keys)
    check_run_config(cfg)
    s = SAMPLERS.build(cfg.sample.sampler.name, sampler_params(cfg))
    assert s.kv_cache.reuses and s.kv_cache.refresh == 5
    bad = load_config(
        "micro", overrides=[*keys[:1], "sample.sampler.params.kv_cache_params.refresh=0"]
    )
    with pytest.raises(D3lmError, match=r"kv_cache 'dkv'.*refresh"):
        check_run_config(bad)
    grid = tmp_path / "grid.yaml"
    OmegaConf.save({"seeds": 1, "sample": {"sample.sampler.params.kv_cache": "*"}}, grid)
    (axis,) = ablation.load_grid(grid).sample
    assert sorted(s.label for s in axis.settings) == ["dkv", "none"]
