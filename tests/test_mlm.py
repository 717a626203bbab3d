"""The ``mlm`` objective (NT v2's pretraining): exact 15 % selection of real tokens, the 80/10/10
split, random tokens from the real vocabulary only, the loss against a direct computation,
determinism, and a micro training run through the CLI.

Tolerances are five binomial standard deviations, sqrt(n p (1 - p)), of the count tested."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch import Tensor

from d3lm.cli import main
from d3lm.config import load_config
from d3lm.diffusion import Linear
from d3lm.diffusion.objectives import MaskedLanguageModel
from d3lm.errors import PluginParamError
from d3lm.registry import OBJECTIVES
from d3lm.rundir import RunDir
from d3lm.stages.checkpoints import read_checkpoint
from d3lm.stages.train import build_model

MASK, CLS, PAD, N_SPECIAL = 2, 3, 1, 6


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Tiny tensors: threads only contend."""


def mlm(vocab: int, **params: float) -> MaskedLanguageModel:
    obj = OBJECTIVES.build("mlm", params, schedule=Linear(), mask_id=MASK)
    obj.set_real_tokens(torch.arange(vocab) >= N_SPECIAL)
    return obj


def batch(vocab: int, rows: int, length: int, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """(ids, maskable, attention_mask): ``<cls>`` then real tokens; every other row is padded
    after a random length, so selection must skip pads and ``<cls>``."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(N_SPECIAL, vocab, (rows, length), generator=g)
    ids[:, 0] = CLS
    ends = torch.randint(2, length, (rows,), generator=g)
    ends[::2] = length
    attention = torch.arange(length) < ends[:, None]
    ids[~attention] = PAD
    return ids, (ids >= N_SPECIAL) & attention, attention


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_selects_exactly_fifteen_percent_of_real_tokens_uniformly() -> None:
    obj = mlm(4107)
    ids, maskable, _ = batch(4107, 400, 101)
    noisy, selected = obj.corrupt(ids, maskable, gen(1))
    n = maskable.sum(-1)
    wanted = torch.clamp_min((0.15 * n + 0.5).floor().long(), 1)
    assert torch.equal(selected.sum(-1), wanted)  # round(0.15 n), at least one
    assert not (selected & ~maskable).any()  # never <cls>, never a pad
    assert torch.equal(noisy[~selected], ids[~selected])  # the rest untouched
    # every position equally likely: per-position counts over the 200 full rows (15 of 100 each)
    counts = selected[::2, 1:].sum(0).double()
    assert stats.chisquare(counts).pvalue > 1e-3


def test_splits_selected_tokens_eighty_ten_ten() -> None:
    vocab = 4107
    obj = mlm(vocab)
    ids, maskable, _ = batch(vocab, 400, 201, seed=2)
    noisy, selected = obj.corrupt(ids, maskable, gen(3))
    s = int(selected.sum())
    masked = int((selected & (noisy == MASK)).sum())
    changed = int((selected & (noisy != MASK) & (noisy != ids)).sum())
    kept = int((selected & (noisy == ids)).sum())
    assert masked + changed + kept == s
    real = vocab - N_SPECIAL
    # a random draw equals the original token with probability 1 / real
    for count, p in ((masked, 0.8), (changed, 0.1 * (1 - 1 / real)), (kept, 0.1 + 0.1 / real)):
        assert abs(count - s * p) < 5 * math.sqrt(s * p * (1 - p)), (count, s, p)


def test_random_tokens_are_uniform_over_real_tokens_and_never_special() -> None:
    vocab = 16
    obj = mlm(vocab)
    ids = torch.full((2000, 50), 6)  # one real token everywhere: a replacement shows as 7..15
    ids[:, 0] = CLS
    noisy, selected = obj.corrupt(ids, ids >= N_SPECIAL, gen(4))
    values = noisy[selected]
    assert not torch.isin(values, torch.tensor([0, 1, 3, 4, 5])).any()
    assert (noisy[:, 0] == CLS).all()
    counts = torch.bincount(values, minlength=vocab)[7:].double()
    assert stats.chisquare(counts).pvalue > 1e-3
    s, p = len(values), 0.1 * 9 / 10
    assert abs(counts.sum().item() - s * p) < 5 * math.sqrt(s * p * (1 - p))


class Lookup:
    """A fixed network: logits depend on the input token and its position; records its input."""

    def __init__(self, vocab: int, length: int) -> None:
        g = gen(5)
        self.tokens = torch.randn(vocab, vocab, generator=g)
        self.positions = torch.randn(length, vocab, generator=g)
        self.seen: list[Tensor] = []

    def __call__(self, ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        self.seen.append(ids)
        return self.tokens[ids] + self.positions[: ids.shape[1]]


def test_loss_is_the_mean_cross_entropy_over_selected_positions() -> None:
    vocab, obj = 40, mlm(40)
    ids, maskable, attention = batch(vocab, 16, 30, seed=6)
    model = Lookup(vocab, 30)
    loss, stats_ = obj.loss(model, ids, maskable, attention, gen(7))
    noisy, selected = obj.corrupt(ids, maskable & attention, gen(7))
    assert torch.equal(model.seen[0], noisy)  # the network saw the corrupted ids
    logits = model(noisy, attention).clone()
    logits[..., MASK] = -math.inf  # the mask token is never a prediction
    nll = -logits.log_softmax(-1).gather(-1, ids[..., None])[..., 0]
    terms = [nll[i, j] for i in range(16) for j in range(30) if selected[i, j]]
    torch.testing.assert_close(loss, torch.stack(terms).mean())
    assert stats_["n_selected"] == len(terms) and "nll_nats" not in stats_


def test_a_fixed_generator_gives_the_same_draw() -> None:
    obj = mlm(4107)
    ids, maskable, _ = batch(4107, 8, 60, seed=8)
    first, again, other = (obj.corrupt(ids, maskable, gen(s)) for s in (9, 9, 10))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[1], other[1])


def test_parameters_are_checked() -> None:
    with pytest.raises(PluginParamError, match="rate"):
        OBJECTIVES.build("mlm", {"rate": 0.0}, schedule=Linear(), mask_id=MASK)
    with pytest.raises(PluginParamError, match="sum <= 1"):
        OBJECTIVES.build("mlm", {"mask_fraction": 0.95}, schedule=Linear(), mask_id=MASK)
    unbound = OBJECTIVES.build("mlm", schedule=Linear(), mask_id=MASK)
    ids, maskable, _ = batch(20, 2, 10)
    with pytest.raises(RuntimeError, match="set_real_tokens"):
        unbound.corrupt(ids, maskable)


def test_the_module_binds_real_tokens_and_validates_with_the_diffusion_bound() -> None:
    cfg = load_config("micro", overrides=["diffusion.objective.name=mlm"])
    model = build_model(cfg)
    tok = model.tokenizer
    assert torch.equal(model.objective.real_ids, torch.arange(N_SPECIAL, tok.vocab_size))
    for module in (model.head.decoder, model.head.dense):
        torch.nn.init.zeros_(module.weight)
    torch.nn.init.zeros_(model.head.bias)  # uniform over the V - 1 non-mask tokens
    ids = tok.batch_encode(["ACGTAC" * 10] * 64)
    loss, bpn, _ = model._loss(ids, gen(0))
    assert bpn is None  # MLM's own loss claims no bound
    assert loss.item() == pytest.approx(math.log(tok.vocab_size - 1), rel=1e-5)
    _, bound, _ = model._loss(ids, gen(0), model.objective.bound)
    assert bound.item() == pytest.approx(math.log2(tok.vocab_size - 1) / 6, rel=0.05)


def test_train_mlm_end_to_end_at_micro(dna_table, tmp_path) -> None:
    overrides = [
        f"data.dataset={dna_table}",
        f"runs_dir={tmp_path}",
        "experiment=mlm",
        "run=r0",
        "diffusion.objective.name=mlm",
        "trainer.max_steps=6",
        "trainer.val_check_interval=3",
        "trainer.checkpoint_every_n_steps=6",
    ]
    assert main(["train", "--scale", "micro", *overrides]) == 0
    log = RunDir(tmp_path / "mlm" / "r0").log()
    assert "train/bpn" not in log.columns  # no likelihood bound is claimed for MLM's loss
    val = log.dropna(subset=["val/bpn"])
    assert len(val) == 2 and val["val/loss"].notna().all()
    assert (val["val/bpn"] > 1.0).all() and (val["val/bpn"] < 3.0).all()
    assert log["train/loss"].dropna().map(math.isfinite).all()
    saved = read_checkpoint(tmp_path / "mlm" / "r0" / "checkpoints" / "last.ckpt")
    assert saved["hyper_parameters"]["diffusion"]["objective"]["name"] == "mlm"
