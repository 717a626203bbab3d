"""The training and inference fast paths compute what the plain paths compute.

Each fast path (logits at scored positions only, the last block at those positions, no
attention mask without pads, the cached per-nucleotide embedding table, fused AdamW) is checked
against the plain computation of the same quantity on the same weights.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from conftest import micro_config

from d3lm.config import load_config, plain
from d3lm.errors import D3lmError
from d3lm.lit.diffusion_lm import DiffusionLM
from d3lm.model import PRESETS, NTv2Encoder
from d3lm.registry import takes_keyword
from d3lm.rundir import RunDir
from d3lm.stages.train import compile_blocks, train
from d3lm.tokenizers import kmer  # noqa: F401  (registers nt6mer)


def model(objective: str, **params: object) -> DiffusionLM:
    cfg = load_config("micro")
    diffusion = plain(cfg.diffusion)
    diffusion["objective"] = {"name": objective, "params": {}}
    spec = plain(cfg.model)
    spec["params"] = {**spec.get("params", {}), **params}
    torch.manual_seed(0)
    return DiffusionLM(
        tokenizer=plain(cfg.tokenizer),
        model=spec,
        diffusion=diffusion,
        optim=plain(cfg.optim),
        max_steps=10,
    )


def batch(lm: DiffusionLM, n: int, bp: int, padded: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    lengths = [bp - 12 * (i % 3) if padded else bp for i in range(n)]
    seqs = ["".join("ACGT"[j] for j in torch.randint(4, (m,), generator=g)) for m in lengths]
    return lm.tokenizer.batch_encode(seqs)


class Dense(torch.nn.Module):
    """The same network without the ``at`` keyword: the objective computes every logit."""

    def __init__(self, lm: DiffusionLM) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        return self.lm(ids, attention_mask)


@pytest.mark.parametrize("objective", ["masked_diffusion", "masked_diffusion_count", "mlm"])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("tied", [False, True])
def test_sparse_loss_and_gradients_equal_the_dense_ones(objective, padded, tied):
    lm = model(objective, tie_embeddings=tied, nucleotide_embeddings=tied)
    ids = batch(lm, 12, 120, padded)
    maskable = ~lm.special[ids]
    mask = ids != lm.tokenizer.pad_id
    assert takes_keyword(lm, "at") and not takes_keyword(Dense(lm), "at")  # two real paths
    results = []
    for net in (lm, Dense(lm)):
        lm.zero_grad()
        loss, stats = lm.objective.loss(
            net, ids, maskable, attention_mask=mask, generator=torch.Generator().manual_seed(2)
        )
        loss.backward()
        grads = {n: p.grad.clone() for n, p in lm.named_parameters() if p.grad is not None}
        results.append((loss.detach(), stats, grads))
    (sparse, s_stats, s_grads), (dense, d_stats, d_grads) = results
    torch.testing.assert_close(sparse, dense)
    for key in d_stats:
        torch.testing.assert_close(s_stats[key], d_stats[key])
    assert s_grads.keys() == d_grads.keys()
    for name, grad in d_grads.items():
        torch.testing.assert_close(s_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("per_row", [1, 9])
def test_last_block_at_positions_equals_the_full_forward(per_row):
    """One query per row takes the gathered-keys path, several the dense-attention one."""
    cfg = PRESETS["micro"]
    torch.manual_seed(0)
    encoder = NTv2Encoder(cfg).eval()
    ids = torch.randint(6, cfg.vocab_size, (5, 20))
    real = torch.ones_like(ids, dtype=torch.bool)
    real[1, 15:] = False
    at = torch.zeros_like(real)
    for row in range(5):
        at[row, torch.randperm(15)[:per_row]] = True
    with torch.no_grad():
        full = encoder(ids, real)
        sparse = encoder(ids, real, at=at)
    torch.testing.assert_close(sparse, full[at], rtol=1e-5, atol=1e-5)


def test_batches_without_pads_run_attention_without_a_mask(monkeypatch):
    lm = model("masked_diffusion")
    seen = []
    forward = lm.encoder.forward

    def spy(ids, attention_mask=None, causal=False, at=None):
        seen.append(attention_mask)
        return forward(ids, attention_mask, causal, at)

    monkeypatch.setattr(lm.encoder, "forward", spy)
    lm._loss(batch(lm, 4, 60, padded=False), torch.Generator().manual_seed(0))
    lm._loss(batch(lm, 4, 60, padded=True), torch.Generator().manual_seed(0))
    assert seen[0] is None
    assert seen[1] is not None and not seen[1].all()


def test_the_embedding_table_is_kept_without_gradients_and_refreshed_on_change():
    """Fused AdamW writes weights in place without bumping their version counters: the kept
    table must notice that change too."""
    lm = model("masked_diffusion", tie_embeddings=True, nucleotide_embeddings=True)
    emb = lm.encoder.embeddings

    def fresh() -> torch.Tensor:
        word = emb.word_embeddings.weight
        return word + emb.nucleotide_embeddings(emb.nucleotide_index).sum(dim=1)

    with torch.no_grad():
        first = emb.weight()
        assert emb.weight() is first  # kept
        torch.testing.assert_close(first, fresh())
        emb.nucleotide_embeddings.weight.add_(1.0)  # an optimiser's in-place step
        second = emb.weight()
        assert second is not first
        torch.testing.assert_close(second, fresh())
        lm.load_state_dict(model("masked_diffusion_count", tie_embeddings=True,
                                 nucleotide_embeddings=True).state_dict())  # fmt: skip
        torch.testing.assert_close(emb.weight(), fresh())
    for p in lm.parameters():
        p.grad = torch.ones_like(p)
    torch.optim.AdamW(lm.parameters(), fused=True).step()  # versions stay as they were
    with torch.no_grad():
        torch.testing.assert_close(emb.weight(), fresh())
    table = emb.weight()  # with gradients: a new table, differentiable
    assert table.requires_grad and table is not second
    table.sum().backward()
    assert emb.nucleotide_embeddings.weight.grad is not None


def test_adamw_runs_fused_except_under_mixed_precision():
    """Lightning refuses gradient clipping with a fused optimiser under AMP."""
    lm = model("masked_diffusion")
    assert lm.configure_optimizers()["optimizer"].defaults["fused"] is True
    lm.trainer = L.Trainer(precision="bf16-mixed", accelerator="cpu", logger=False)
    assert not lm.configure_optimizers()["optimizer"].defaults["fused"]


def test_compile_auto_is_on_for_gpus_only_and_bad_values_fail():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert compile_blocks("auto", cpu) is False
    assert compile_blocks("auto", gpu) is True
    assert compile_blocks(True, cpu) is True
    with pytest.raises(D3lmError, match=r"trainer\.compile='yes'"):
        compile_blocks("yes", cpu)


@pytest.mark.slow
def test_compiled_blocks_train_to_the_eager_losses(dna_table, tmp_path):
    """torch.compile changes rounding only: the same run, compiled, logs the same losses."""
    losses = {}
    for compiled in (False, True):
        cfg = micro_config(
            dna_table,
            tmp_path,
            "experiment=c",
            f"run=compiled-{compiled}".lower(),
            "trainer.max_steps=3",
            f"trainer.compile={str(compiled).lower()}",
        )
        run_dir = train(cfg)
        log = RunDir(run_dir).log()
        losses[compiled] = log["train/loss"].dropna().to_numpy()
    assert len(losses[True]) == 3
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
