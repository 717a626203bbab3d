"""Sampler throughput without changing a single draw: cohorts whose network calls are merged
(refill), the sparse last block for logit-reading orders, ``first_index`` and worker processes.

The reference is the sampler's definition written out plainly (one batch, the whole network
and the head at every position, every step), independent of cohorts, caches and sparse calls.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from conftest import micro_config
from omegaconf import OmegaConf
from registered import registered
from torch import Tensor

from d3lm.cli import main
from d3lm.config import load_config, load_run_config
from d3lm.errors import D3lmError
from d3lm.model import PRESETS as SIZES
from d3lm.model import LMHead, NTv2Encoder
from d3lm.registry import SAMPLERS
from d3lm.sampling import NetworkDenoiser, Sampler, StepContext, StepEvent, rng
from d3lm.sampling import workers as sampling_workers
from d3lm.sampling.loop import _inverse_cdf, _top_set
from d3lm.stages.sample import sample, sample_device
from d3lm.stages.train import train

# A tokenizer-shaped layout: <pad> <mask> <cls> <unk>, 16 "dimers", 4 single nucleotides.
MASK, CLS, V = 1, 2, 24
DIMERS, SINGLES = range(4, 20), range(20, 24)


def make_layout(n_body: int, n_tail: int = 1) -> Tensor:
    layout = torch.zeros(1 + n_body + n_tail, V, dtype=torch.bool)
    layout[0, CLS] = True
    layout[1 : 1 + n_body, DIMERS] = True
    layout[1 + n_body :, SINGLES] = True
    return layout


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Tiny tensors: threads only contend (and outputs are compared bitwise)."""


@pytest.fixture(scope="module")
def micro() -> NetworkDenoiser:
    """A random-init ``micro`` NTv2Encoder + LM head (the encoder has the sparse ``at`` path)."""
    cfg = dataclasses.replace(SIZES["micro"], vocab_size=V)
    torch.manual_seed(3)
    return NetworkDenoiser(NTv2Encoder(cfg).eval(), LMHead(cfg).eval(), MASK, V)


class Spy:
    """A denoiser that records the rows and ``at`` mask of every network call."""

    def __init__(self, den: NetworkDenoiser) -> None:
        self.den, self.mask_id, self.vocab_size = den, den.mask_id, den.vocab_size
        self.time_conditioned = False
        self.calls: list[tuple[Tensor, Tensor | None]] = []

    def features(self, ids: Tensor, at: Tensor | None = None) -> Tensor:
        self.calls.append((ids.clone(), None if at is None else at.clone()))
        return self.den.features(ids, at)

    def logits(self, features: Tensor) -> Tensor:
        return self.den.logits(features)


def straightforward(s: Sampler, den: NetworkDenoiser, n: int, layout: Tensor, seed: int):
    """(ids, trace) by the sampler's definition: the old loop's baseline branch, one batch."""
    forced = layout.sum(-1) == 1
    ids = torch.where(forced, layout.long().argmax(-1), MASK).expand(n, -1).clone()
    free, length = ids == MASK, ids.shape[1]
    keys = rng.row_keys(seed, torch.arange(n))
    confidence = torch.zeros(ids.shape, dtype=torch.float64)
    trace = torch.full_like(ids, -1)
    r, c = torch.ones_like(free).nonzero(as_tuple=True)
    step0 = 0
    for start, end, n_steps in s._blocks(length):
        window = (torch.arange(length) >= start) & (torch.arange(length) < end)
        for j in range(n_steps):
            masked = ids == MASK
            ctx = StepContext(
                step=step0 + j,
                steps_left=n_steps - j,
                alpha_t=s.alpha(1 - j / n_steps),
                alpha_s=s.alpha(1 - (j + 1) / n_steps),
                ids=ids,
                masked=masked,
                eligible=masked & window,
                committed=free & ~masked & window,
                uniforms=rng.uniforms(keys, step0 + j, length),
                confidence=confidence,
                sigma=torch.zeros(n, dtype=torch.float64),
            )
            remask = torch.zeros_like(masked)
            if j < n_steps - 1:
                remask, ctx.sigma = s.remasker(ctx)
            ctx.at = (r, c)
            ctx.probs = s._probs(den.logits(den.features(ids)[r, c]), layout[c])
            ctx.draws = _inverse_cdf(ctx.probs, ctx.stream(rng.TOKEN)[r, c])
            k, scores = s.count(ctx), s.order.scores(ctx)
            if s.order.replans:
                chosen = _top_set(scores, ctx.eligible | ctx.committed, k + ctx.committed.sum(1))
                remask |= ctx.committed & ~chosen
                commit = chosen & ctx.eligible
            else:
                commit = _top_set(scores, ctx.eligible, k)
            p_tok = ctx.probs.gather(-1, ctx.draws[:, None]).view(ids.shape)
            ids = torch.where(commit, ctx.draws.view(ids.shape), ids).masked_fill(remask, MASK)
            confidence = torch.where(commit, p_tok, confidence)
            trace = torch.where(commit, step0 + j, trace).masked_fill(remask, -1)
        step0 += n_steps
    return ids, trace


# ---- refill: same ids as the definition, for every preset and batch size ---------------------


@pytest.mark.parametrize("preset", registered("sampler"))
def test_every_preset_draws_what_the_definition_draws(micro, preset):
    """ReMDM matches here because no cohort runs out of masked positions before its last step
    (one that does stops there, so its rows are remasked no more: today's behaviour)."""
    layout, n = make_layout(12), 20
    params = {} if preset == "left_to_right" else {"steps": 8}
    fast = SAMPLERS.build(preset, params)
    out = fast.sample(micro, n, layout, seed=4, batch_size=7)  # 3 cohorts: refill at work
    ref_ids, ref_trace = straightforward(fast, micro, n, layout, seed=4)
    assert torch.equal(out, ref_ids)
    assert torch.equal(fast.last_run.trace, ref_trace)
    for bs in (3, 64):
        assert torch.equal(fast.sample(micro, n, layout, seed=4, batch_size=bs), out), bs
    slow = SAMPLERS.build(preset, {**params, "cache": False, "sparse_head": False})
    assert torch.equal(slow.sample(micro, n, layout, seed=4, batch_size=7), out)
    assert (slow.last_run.nfe == fast.steps).all()  # the baseline: every row, every step
    assert (fast.last_run.nfe <= slow.last_run.nfe).all()


def test_refill_merges_calls_and_keeps_the_nfe(micro):
    """Ancestral counts commit nothing on most steps; static batches of 8 would call the
    network at every step where any of their rows commits (read off the trace)."""
    layout, n, bs = make_layout(6), 40, 8
    s = SAMPLERS.build("ancestral", {"steps": 30})
    spy = Spy(micro)
    out = s.sample(spy, n, layout, seed=1, batch_size=bs)
    trace, nfe = s.last_run.trace, s.last_run.nfe
    rows = torch.tensor([len(ids) for ids, _ in spy.calls])
    commit_steps = [set(t[t >= 0].tolist()) for t in trace]
    static_calls = sum(len(set().union(*commit_steps[i : i + bs])) for i in range(0, n, bs))
    assert len(spy.calls) < static_calls / 2
    assert torch.equal(nfe, torch.tensor([len(steps) for steps in commit_steps]))
    assert rows.sum() == nfe.sum()
    # full calls until the queue of cohorts is empty; then at most `steps` ticks drain it
    assert (rows < bs).sum() <= s.steps
    assert torch.equal(out, s.sample(micro, n, layout, seed=1, batch_size=n))


def test_hook_events_and_last_run_stay_per_global_sequence(micro):
    layout, n = make_layout(6), 10
    s = SAMPLERS.build("remdm", {"steps": 12})
    events: list[StepEvent] = []
    out = s.sample(micro, n, layout, seed=2, batch_size=3, hook=events.append)
    mine = {i: [e.step for e in events if i in e.index.tolist()] for i in range(n)}
    assert all(steps and steps == sorted(set(steps)) for steps in mine.values())
    last = {}
    for e in events:  # each sequence's ids after its last step are its output
        for row, i in enumerate(e.index.tolist()):
            last[i] = e.ids[row]
    assert torch.equal(torch.stack([last[i] for i in range(n)]), out)
    nfe = s.last_run.nfe
    assert torch.equal(s.sample(micro, 3, layout, seed=2, batch_size=3), out[:3])
    assert torch.equal(s.last_run.nfe, nfe[:3])


def test_first_index_offsets_the_global_ids(micro):
    layout = make_layout(6)
    s = SAMPLERS.build("random", {"steps": 5})
    whole = s.sample(micro, 15, layout, seed=0, batch_size=4)
    seen: list[int] = []
    tail = s.sample(
        micro,
        10,
        layout,
        seed=0,
        batch_size=4,
        first_index=5,
        hook=lambda e: seen.extend(e.index.tolist()),
    )
    assert torch.equal(tail, whole[5:])
    assert set(seen) == set(range(5, 15))


# ---- sparse last block for logit-reading orders -------------------------------------------


def expected_where(s: Sampler, ids: Tensor, layout: Tensor) -> Tensor:
    """Where a step needs logits: masked positions of the row's current block (the block of
    its first masked position), plus its committed free ones for replanning orders."""
    pos = torch.arange(ids.shape[1])
    size = s.block_length or ids.shape[1]
    first = torch.where(ids == MASK, pos, ids.shape[1]).min(1).values
    window = pos // size == (first // size)[:, None]
    free = (layout.sum(-1) != 1).expand_as(ids)
    return (free if s.order.replans else ids == MASK) & window


@pytest.mark.parametrize("preset", ["confidence", "p2", "semi_ar"])
def test_logit_orders_run_the_last_block_only_where_they_read(micro, preset):
    layout, n = make_layout(12), 12
    s = SAMPLERS.build(preset, {"steps": 8})
    spy = Spy(micro)
    last_block_rows: list[int] = []
    ffn = micro.encoder.layers[-1].ffn
    handle = ffn.register_forward_hook(lambda m, i, o: last_block_rows.append(len(i[0])))
    try:
        out = s.sample(spy, n, layout, seed=6, batch_size=5)
    finally:
        handle.remove()
    assert all(at is not None for _, at in spy.calls)
    for ids, at in spy.calls:
        assert torch.equal(at, expected_where(s, ids, layout))
    assert last_block_rows == [int(at.sum()) for _, at in spy.calls]
    slow = SAMPLERS.build(preset, {"steps": 8, "cache": False, "sparse_head": False})
    assert torch.equal(out, slow.sample(micro, n, layout, seed=6, batch_size=5))
    assert torch.equal(s.last_run.trace, slow.last_run.trace)


def test_position_cache_reuses_rows_that_did_not_change(micro):
    """Ancestral counts with a confidence order commit nothing on some steps: those rows keep
    their features and skip the call; the draws stay those of the full loop."""
    layout, n = make_layout(4), 12
    s = Sampler("confidence", "ancestral", steps=20)
    spy = Spy(micro)
    out = s.sample(spy, n, layout, seed=5, batch_size=4)
    commit_steps = torch.tensor([len(set(t[t >= 0].tolist())) for t in s.last_run.trace])
    assert torch.equal(s.last_run.nfe, commit_steps)  # one call per step that commits
    assert sum(len(ids) for ids, _ in spy.calls) == s.last_run.nfe.sum() < n * 20
    slow = Sampler("confidence", "ancestral", steps=20, cache=False, sparse_head=False)
    assert torch.equal(out, slow.sample(micro, n, layout, seed=5, batch_size=4))


# ---- workers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 5, 16, 17])
@pytest.mark.parametrize("parts", [1, 2, 3, 8])
def test_ranges_cover_every_sequence_once_in_order(n, parts):
    got = sampling_workers.ranges(n, parts)
    assert [i for r in got for i in r] == list(range(n))
    assert len(got) == max(1, min(parts, n))
    sizes = [len(r) for r in got]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize(("n", "parts", "batch"), [(9, 2, 2), (10, 3, 4), (7, 4, 7), (1, 2, 3)])
def test_worker_ranges_are_whole_batches(n, parts, batch):
    got = sampling_workers.batch_ranges(n, parts, batch)
    assert [i for r in got for i in r] == list(range(n))
    single = [range(i, min(i + batch, n)) for i in range(0, n, batch)]
    mine = [range(i, min(i + batch, r.stop)) for r in got for i in range(r.start, r.stop, batch)]
    assert mine == single  # every worker batch is a batch of the one-process job


def test_auto_is_one_worker_per_core_but_not_more_than_batches(monkeypatch):
    monkeypatch.setattr(sampling_workers, "cores", lambda: 6)
    assert sampling_workers.resolve("auto", "sample.workers", batches=40) == 6
    assert sampling_workers.resolve("auto", "sample.workers", batches=2) == 2
    assert sampling_workers.resolve(3, "sample.workers", batches=1) == 3


@pytest.mark.parametrize("value", ["0", "-2", "many", "1.5", "true", "[2]"])
def test_bad_workers_values_fail_naming_the_key(value, tmp_path, capsys):
    cfg = load_config("micro", overrides=[f"sample.workers={value}", f"cache_dir={tmp_path}"])
    with pytest.raises(D3lmError, match=r"sample\.workers=.*integer >= 1 or 'auto'"):
        sample(cfg, tmp_path / "no-run")  # fails before it looks for a checkpoint
    run = tmp_path / "run"
    run.mkdir()
    OmegaConf.save(load_config("micro", overrides=[f"cache_dir={tmp_path}"]), run / "config.yaml")
    assert main(["sample", str(run), "--workers", value]) == 2
    assert "sample.workers=" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]  # nothing written


@pytest.mark.slow
def test_two_workers_write_what_one_process_writes(dna_table, tmp_path):
    cfg = micro_config(dna_table, tmp_path, "experiment=w", "run=r", "trainer.max_steps=2")
    run_dir = train(cfg)
    outputs = {}
    for workers in (1, 2):
        scfg = load_run_config(
            run_dir,
            [
                f"sample.workers={workers}",
                "sample.n=9",
                "sample.batch_size=2",
                "sample.sampler.name=remdm",
                "sample.sampler.params.steps=10",
            ],
        )
        fasta = sample(scfg, run_dir, out=tmp_path / f"{workers}.fa", trace=tmp_path / "t")
        outputs[workers] = (Path(fasta).read_text(), torch.load(tmp_path / "t"))
    (text1, saved1), (text2, saved2) = outputs[1], outputs[2]
    assert text1 == text2 and text1.count(">") == 9
    assert torch.equal(saved1["trace"], saved2["trace"])
    assert torch.equal(saved1["nfe"], saved2["nfe"])


@pytest.mark.parametrize("value", ["tpu9", "cuda:x", "gpu"])
def test_bad_sample_device_fails_naming_the_key(value):
    with pytest.raises(D3lmError, match=r"sample\.device="):
        sample_device(value)


def test_auto_device_is_the_cpu_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert sample_device("auto") == torch.device("cpu")
    assert sample_device("cpu") == torch.device("cpu")
    with pytest.raises(D3lmError, match=r"device='cuda:0': this machine has no cuda device"):
        sample_device("cuda:0")
