"""Sampler behaviour on a toy network and the micro model: legality, determinism, batch-size
independence, infill, caching/NFE, presets, and the worked example of a new order."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from registered import examples, registered
from torch import Tensor, nn

from d3lm.registry import SAMPLERS
from d3lm.sampling import NetworkDenoiser, Sampler, StepEvent

# A tiny tokenizer-shaped layout: <pad> <mask> <cls> <unk>, 16 "dimers", 4 single nucleotides.
MASK, CLS, V = 1, 2, 24
DIMERS, SINGLES = range(4, 20), range(20, 24)


def make_layout(n_body: int = 5, n_tail: int = 1) -> Tensor:
    layout = torch.zeros(1 + n_body + n_tail, V, dtype=torch.bool)
    layout[0, CLS] = True
    layout[1 : 1 + n_body, DIMERS] = True
    layout[1 + n_body :, SINGLES] = True
    return layout


class ToyNet(nn.Module):
    """Embedding, a convolution so positions see their neighbours, a linear head."""

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(V, hidden)
        self.conv = nn.Conv1d(hidden, hidden, 3, padding=1)
        self.head = nn.Linear(hidden, V)

    def encode(self, ids: Tensor) -> Tensor:
        return torch.tanh(self.conv(self.emb(ids).transpose(1, 2)).transpose(1, 2)) * 3


@pytest.fixture(scope="module")
def denoiser() -> NetworkDenoiser:
    net = ToyNet()
    return NetworkDenoiser(net.encode, net.head, mask_id=MASK, vocab_size=V)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Tiny tensors: threads only contend (and batch-size equality is tested bitwise)."""


def check_legal(out: Tensor, layout: Tensor) -> None:
    assert (out != MASK).all()
    assert layout.gather(1, out.T).T.all(), "an illegal token was drawn"


@pytest.mark.parametrize("preset", registered("sampler"))
def test_every_preset_gives_legal_complete_sequences(denoiser, preset):
    layout = make_layout()
    sampler = SAMPLERS.build(preset, {"steps": 6})
    out = sampler.sample(denoiser, 9, layout, seed=1, batch_size=4)
    assert out.shape == (9, layout.shape[0]) and out.dtype == torch.long
    check_legal(out, layout)
    assert (out[:, 0] == CLS).all()


#: Each sampler axis and the keyword that takes its params: every registered plugin of an axis is
#: tested inside the default sampler (random order, fixed count, no remasking).
AXES = {"unmask_order": "order", "commit_count": "count", "remasker": "remasker"}
AXIS_CASES = [
    pytest.param((kind, *case.values[0]), id=f"{kind}-{case.id}")
    for kind in AXES
    for case in examples(kind)
]


@pytest.mark.parametrize("case", AXIS_CASES)
def test_every_axis_plugin_gives_legal_reproducible_batch_independent_samples(denoiser, case):
    """An order, count or remasker: legal complete sequences, a function of the seed and of a
    sequence's index only (not of the batch size)."""
    kind, name, params = case
    axis = AXES[kind]
    sampler = Sampler(**{axis: name, f"{axis}_params": params}, steps=5)
    layout = make_layout(6)
    out = sampler.sample(denoiser, 12, layout, seed=2, batch_size=12)
    assert out.shape == (12, layout.shape[0])
    check_legal(out, layout)
    assert torch.equal(sampler.sample(denoiser, 12, layout, seed=2, batch_size=5), out)


def test_random_preset_is_the_paper_setting():
    s = SAMPLERS.build("random")
    assert (type(s.order).__name__, type(s.count).__name__) == ("RandomOrder", "Fixed")
    assert (s.steps, s.temperature, s.block_length) == (50, 1.1, None)


def test_seed_reproduces_and_changes(denoiser):
    layout, s = make_layout(), SAMPLERS.build("random", {"steps": 4})
    a = s.sample(denoiser, 16, layout, seed=7)
    assert torch.equal(a, s.sample(denoiser, 16, layout, seed=7))
    assert not torch.equal(a, s.sample(denoiser, 16, layout, seed=8))


@pytest.mark.parametrize("preset", registered("sampler"))
def test_output_does_not_depend_on_batch_size(denoiser, preset):
    layout, s = make_layout(8), SAMPLERS.build(preset, {"steps": 5})
    ref = s.sample(denoiser, 64, layout, seed=3, batch_size=64)
    for bs in (1, 7):
        assert torch.equal(s.sample(denoiser, 64, layout, seed=3, batch_size=bs), ref), bs
    # a sequence's output is a function of its global index only
    ids = ref.clone()
    known = torch.zeros_like(ids, dtype=torch.bool)
    assert torch.equal(s.infill(denoiser, ids, known, layout, seed=3, batch_size=64), ref)


def test_batch_size_changes_network_output_only_by_float_noise():
    """Why the test above pins one thread: with two, conv/matmul kernels pick other blockings
    per batch size (~1e-6 apart in fp32). Orders that rank by probability (``p2`` most: equal
    scores of equal committed tokens) can then break an exact tie the other way."""
    net, ids = ToyNet(), torch.randint(4, 20, (64, 10), generator=torch.Generator().manual_seed(0))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        whole = net.encode(ids)
        single = torch.cat([net.encode(ids[i : i + 1]) for i in range(len(ids))])
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(whole, single, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "schedule", ["cosine", lambda t: 1 - t**2, pytest.param(None, id="linear-default")]
)
def test_ancestral_accepts_schedule_name_object_or_callable(denoiser, schedule):
    import d3lm.diffusion.schedules  # noqa: F401  (registers "cosine")

    s = SAMPLERS.build("ancestral", {"steps": 8, "schedule": schedule})
    check_legal(s.sample(denoiser, 6, make_layout(6), seed=0), make_layout(6))
    assert s.alpha(1.0) == pytest.approx(0.0, abs=1e-12) and s.alpha(0.0) == 1.0


@pytest.mark.parametrize("preset", registered("sampler"))
def test_optimised_loop_draws_the_same_tokens_as_straightforward(denoiser, preset):
    layout = make_layout(8)
    fast = SAMPLERS.build(preset, {"steps": 5})
    slow = SAMPLERS.build(preset, {"steps": 5, "cache": False, "sparse_head": False})
    a = fast.sample(denoiser, 32, layout, seed=5)
    assert torch.equal(a, slow.sample(denoiser, 32, layout, seed=5))
    assert torch.equal(fast.last_run.trace, slow.last_run.trace)
    assert (fast.last_run.nfe <= slow.last_run.nfe).all()


def test_ancestral_cache_skips_steps_where_nothing_changes(denoiser):
    layout = make_layout(3)  # 4 free tokens, 40 steps: most steps commit nothing
    s = SAMPLERS.build("ancestral", {"steps": 40})
    s.sample(denoiser, 20, layout, seed=0)
    committed_steps = torch.tensor([len(set(t[t >= 0].tolist())) for t in s.last_run.trace])
    assert torch.equal(s.last_run.nfe, committed_steps)
    assert s.last_run.nfe.max() <= 4 < s.steps


def test_random_order_calls_the_network_once_per_step(denoiser):
    layout = make_layout(6)
    s = SAMPLERS.build("random", {"steps": 4})
    s.sample(denoiser, 5, layout, seed=0)
    assert (s.last_run.nfe == 4).all()
    # the trace: 7 free positions over 4 steps = 2, 2, 2, 1 (earlier steps take the remainder)
    counts = torch.stack([(s.last_run.trace == k).sum(1) for k in range(4)], 1)
    assert (counts == torch.tensor([2, 2, 2, 1])).all()
    assert (s.last_run.trace[:, 0] == -1).all()  # <cls> is known, never sampled


def test_infill_keeps_known_positions(denoiser):
    layout = make_layout(8)
    s = SAMPLERS.build("random", {"steps": 5})
    ids = s.sample(denoiser, 12, layout, seed=0)
    known = torch.rand(ids.shape, generator=torch.Generator().manual_seed(0)) < 0.5
    prompt = ids.masked_fill(~known, MASK)
    out = s.infill(denoiser, prompt, known, layout, seed=9)
    assert torch.equal(out[known], ids[known])
    check_legal(out, layout)
    assert (s.last_run.trace[known] == -1).all()


def test_infill_rejects_illegal_known_tokens(denoiser):
    layout = make_layout()
    ids = torch.full((1, layout.shape[0]), MASK)
    ids[0, 2] = 21  # a single nucleotide where a dimer belongs
    with pytest.raises(ValueError, match=r"\(0, 2\)"):
        SAMPLERS.build("random").infill(denoiser, ids, ids != MASK, layout, seed=0)


def test_hook_sees_every_step_and_semi_ar_goes_block_by_block(denoiser):
    layout = make_layout(11)  # 13 tokens, blocks of 4: [0,4) [4,8) [8,12) [12,13)
    events: list[StepEvent] = []
    s = SAMPLERS.build("semi_ar", {"steps": 8, "block_length": 4})
    s.sample(denoiser, 3, layout, seed=0, hook=events.append)
    assert [e.step for e in events] == sorted({e.step for e in events})
    trace = s.last_run.trace
    for b in range(3):
        assert trace[:, 4 * b : 4 * b + 4].max() < trace[:, 4 * b + 4 :].min()


def test_remdm_remasks_and_still_finishes(denoiser):
    layout = make_layout(10)
    remasked = []
    s = SAMPLERS.build("remdm", {"steps": 20, "remasker_params": {"eta": 0.5}})
    out = s.sample(denoiser, 8, layout, seed=0, hook=lambda e: remasked.append(e.remasked.sum()))
    assert sum(remasked) > 0
    check_legal(out, layout)


def test_threshold_count_commits_many_per_step(denoiser):
    layout = make_layout(10)
    s = Sampler("confidence", "threshold", count_params={"threshold": 0.0}, steps=10)
    s.sample(denoiser, 4, layout, seed=0)
    assert (s.last_run.nfe == 1).all()  # everything is above 0: one step, one call


def test_temperature_top_k_top_p_restrict_draws(denoiser):
    layout = make_layout(6)
    greedy = Sampler(steps=7, top_k=1).sample(denoiser, 4, layout, seed=0)
    nucleus = Sampler(steps=7, top_p=1e-9).sample(denoiser, 4, layout, seed=0)
    assert torch.equal(greedy, nucleus)  # both keep only the top token
    with pytest.raises(ValueError):
        Sampler(temperature=0.0)


def test_micro_model_end_to_end():
    import dataclasses

    from d3lm.model import PRESETS as SIZES
    from d3lm.model import LMHead, NTv2Encoder

    cfg = dataclasses.replace(SIZES["micro"], vocab_size=V)
    den = NetworkDenoiser(NTv2Encoder(cfg).eval(), LMHead(cfg).eval(), MASK, V)
    layout = make_layout(20)
    a = SAMPLERS.build("random", {"steps": 5}).sample(den, 7, layout, seed=0, batch_size=7)
    b = SAMPLERS.build("random", {"steps": 5}).sample(den, 7, layout, seed=0, batch_size=1)
    check_legal(a, layout)
    assert torch.equal(a, b)
    assert den.nfe == 2 * 7 * 5


@pytest.mark.parametrize("preset", ["random", "remdm"])
def test_micro_model_sparse_encoder_draws_what_the_straightforward_loop_draws(preset):
    """The optimised loop asks the encoder for committed positions only (its last block runs
    there alone); the tokens match the full network + full softmax loop."""
    import dataclasses

    from d3lm.model import PRESETS as SIZES
    from d3lm.model import LMHead, NTv2Encoder

    cfg = dataclasses.replace(SIZES["micro"], vocab_size=V)
    torch.manual_seed(1)
    encoder = NTv2Encoder(cfg).eval()
    den = NetworkDenoiser(encoder, LMHead(cfg).eval(), MASK, V)
    rows: list[int] = []
    hook = encoder.layers[-1].ffn.register_forward_hook(lambda m, i, o: rows.append(len(i[0])))
    layout = make_layout(20)
    fast = SAMPLERS.build(preset, {"steps": 8}).sample(den, 16, layout, seed=2)
    hook.remove()
    slow = SAMPLERS.build(preset, {"steps": 8, "cache": False, "sparse_head": False})
    assert torch.equal(fast, slow.sample(den, 16, layout, seed=2))
    assert max(rows) < 16 * layout.shape[0] / 2  # never the whole (B, L) grid


@pytest.mark.parametrize("n_bp", [1, 13, 200])
def test_nt6mer_layout_gives_exactly_the_requested_length(n_bp):
    import dataclasses

    from d3lm.model import PRESETS as SIZES
    from d3lm.model import LMHead, NTv2Encoder
    from d3lm.registry import TOKENIZERS
    from d3lm.tokenizers import kmer  # noqa: F401  (registers nt6mer)

    tok = TOKENIZERS.build("nt6mer")
    cfg = dataclasses.replace(SIZES["micro"], vocab_size=tok.vocab_size)
    den = NetworkDenoiser(NTv2Encoder(cfg).eval(), LMHead(cfg).eval(), tok.mask_id, tok.vocab_size)
    out = SAMPLERS.build("random", {"steps": 4}).sample(den, 3, tok.layout(n_bp), seed=0)
    seqs = [tok.decode(row) for row in out]
    assert all(len(q) == n_bp and set(q) <= set("ACGT") for q in seqs), seqs


# ---- Worked example (README developer guide): a new order in one small file -----------------


def readme_order_example() -> str:
    """The README's "Adding an unmasking order" code block, run as written (so it cannot rot)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("### Adding an unmasking order", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


exec(readme_order_example(), {})


def test_worked_example_new_order_runs_in_the_grid(denoiser):
    layout = make_layout(9)  # 11 tokens, centre at 5
    s = SAMPLERS.build("random", {"order": "center_out", "steps": 10})
    check_legal(s.sample(denoiser, 3, layout, seed=0), layout)
    trace = s.last_run.trace[0]
    assert trace[5] == 0 and trace[10] == trace.max()  # position 10 is farthest
