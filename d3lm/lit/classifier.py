"""SequenceClassifier: an NT v2 backbone read out by a pooling and a head, trained with
cross-entropy and scored by MCC, macro F1 and accuracy.

Like DiffusionLM it takes plain dicts (the config sections), so its checkpoint alone rebuilds it
for ``d3lm predict``; the pretrained encoder weights are loaded after construction
(:meth:`SequenceClassifier.load_encoder`), and a pretraining LM head is never part of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassMatthewsCorrCoef,
)

from d3lm.errors import D3lmError
from d3lm.lit.diffusion_lm import (
    RNG_KEY,
    fused_adamw,
    rng_states,
    set_rng_states,
    warmup_cosine,
)
from d3lm.model import CLASSIFIER_HEADS, POOLINGS, NTv2Encoder
from d3lm.registry import BACKBONES, TOKENIZERS
from d3lm.tasks.base import METRICS
from d3lm.tokenizers import Tokenizer

#: Optimiser settings and their defaults (AdamW, warm-up then cosine decay, as DiffusionLM).
OPTIM_DEFAULTS: dict[str, Any] = {
    "lr_head": 1e-3,
    "lr_body": 1e-4,
    "weight_decay": 0.01,
    "betas": (0.9, 0.999),
    "warmup_steps": 0,
    "min_lr_ratio": 0.1,
}


def scores(classes: int) -> MetricCollection:
    return MetricCollection(
        {
            "mcc": MulticlassMatthewsCorrCoef(classes),
            "f1": MulticlassF1Score(classes, average="macro"),
            "accuracy": MulticlassAccuracy(classes, average="micro"),
        }
    )


def frozen_modules(encoder: NTv2Encoder, freeze: str | int) -> list[nn.Module]:
    """The parts of ``encoder`` that ``freeze`` keeps fixed: ``none``, ``all``, or N (the
    embeddings and the first N blocks)."""
    named = {"none": [], "all": [encoder]}
    if isinstance(freeze, str) and freeze in named:
        return named[freeze]
    n_layers = len(encoder.layers)
    if isinstance(freeze, bool) or not isinstance(freeze, int) or not 0 <= freeze <= n_layers:
        raise D3lmError(
            f"freeze={freeze!r}: expected none, all or a number of blocks in 0..{n_layers} "
            "(the embeddings and that many blocks are frozen)"
        )
    return [encoder.embeddings, *encoder.layers[:freeze]]


class SequenceClassifier(L.LightningModule):
    """Backbone -> pooling (``POOLINGS``) -> head (``CLASSIFIER_HEADS``) -> class logits.

    ``freeze``: ``none``, ``all`` or N (embeddings and first N blocks), left out of the
    optimiser; ``optim``: ``OPTIM_DEFAULTS`` keys; ``class_weights``: per-class weights of the
    cross-entropy (None: unweighted). Logs ``train/loss``, ``val/{loss,mcc,f1,accuracy}`` and
    ``test/{mcc,f1,accuracy}``.
    """

    def __init__(
        self,
        tokenizer: dict[str, Any],
        model: dict[str, Any],
        classes: Sequence[str],
        pooling: str = "cls",
        head: dict[str, Any] | None = None,
        freeze: str | int = "none",
        optim: dict[str, Any] | None = None,
        class_weights: Sequence[float] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if len(classes) < 2:
            raise D3lmError(f"a classifier needs at least 2 classes, got {list(classes)}")
        self.tokenizer: Tokenizer = TOKENIZERS.build(tokenizer["name"], tokenizer.get("params"))
        config = BACKBONES.build(model["preset"], model.get("params"))
        self.backbone_config = dataclasses.replace(config, vocab_size=self.tokenizer.vocab_size)
        self.encoder = NTv2Encoder(self.backbone_config, self.tokenizer.nucleotide_codes())
        self.pooling = POOLINGS.build(pooling)
        head = head or {"name": "linear", "params": {}}
        self.head = CLASSIFIER_HEADS.build(
            head["name"], head.get("params"), hidden=config.hidden, classes=len(classes)
        )
        for module in frozen_modules(self.encoder, freeze):
            module.requires_grad_(False)
        self.optim = {**OPTIM_DEFAULTS, **(optim or {})}
        if class_weights is not None and len(class_weights) != len(classes):
            raise D3lmError(f"{len(class_weights)} class weights for {len(classes)} classes")
        weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float)
        self.register_buffer("class_weight", weight, persistent=False)
        special = torch.zeros(self.tokenizer.vocab_size, dtype=torch.bool)
        special[self.tokenizer.special_ids] = True
        self.register_buffer("special", special, persistent=False)
        self.val_loss = MeanMetric()
        self.val_scores = scores(len(classes))
        self.test_scores = scores(len(classes))
        self._resumed_rng: dict[str, Any] | None = None

    # -- data ---------------------------------------------------------------------------------

    def encode(self, sequences: Sequence[str], names: Sequence[str], source: str) -> Tensor:
        """Token ids (B, L), ``<cls>`` first, right-padded. ``<cls>`` is prepended here for a
        tokenizer that does not emit it (``add_cls: false``), so ``cls`` pooling always reads
        it. A row longer than the backbone's ``max_len`` is a D3lmError naming it and ``source``.
        """
        ids = self.tokenizer.batch_encode(list(sequences), names=list(names))
        if not self.tokenizer.add_cls:
            ids = torch.cat([torch.full((len(ids), 1), self.tokenizer.cls_id), ids], dim=1)
        counts = (ids != self.tokenizer.pad_id).sum(dim=1)
        max_len = self.backbone_config.max_len
        too_long = (counts > max_len).nonzero().flatten()
        if too_long.numel():
            i = int(too_long[0])
            raise D3lmError(
                f"{source}: record {names[i]!r}: {len(sequences[i])} bp make {int(counts[i])} "
                f"tokens with <cls>, more than the backbone's max_len {max_len} "
                f"({too_long.numel()} records are too long)"
            )
        return ids

    # -- network ------------------------------------------------------------------------------

    def load_encoder(self, weights: dict[str, Tensor], source: str | Path) -> None:
        """Copy pretrained encoder weights (names relative to the encoder); anything that does
        not fit this backbone is a D3lmError naming ``source``."""
        try:
            result = self.encoder.load_state_dict(weights, strict=False)
        except RuntimeError as err:  # wrong shapes
            lines = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
            raise D3lmError(
                f"{source}: encoder weights do not fit: {'; '.join(lines[:2])}"
            ) from None
        wrong = [*result.missing_keys, *result.unexpected_keys]
        if wrong:
            raise D3lmError(
                f"{source}: encoder weights do not fit: {len(result.missing_keys)} missing and "
                f"{len(result.unexpected_keys)} unexpected tensors (first: encoder.{wrong[0]})"
            )

    def pooled(self, ids: Tensor) -> Tensor:
        """One vector per sequence, (B, hidden)."""
        states = self.encoder(ids, ids != self.tokenizer.pad_id)
        return self.pooling(states, ~self.special[ids])

    def forward(self, ids: Tensor) -> Tensor:
        """Class logits (B, classes) for token ids (B, L)."""
        return self.head(self.pooled(ids))

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y, weight=self.class_weight)

    # -- steps --------------------------------------------------------------------------------

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        ids, y = batch
        loss = self.loss(self(ids), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _score(self, batch: tuple[Tensor, Tensor], metrics: MetricCollection) -> Tensor:
        ids, y = batch
        logits = self(ids)
        metrics.update(logits.argmax(dim=-1), y)
        return self.loss(logits, y)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.val_loss.update(self._score(batch, self.val_scores), batch[0].shape[0])

    def on_validation_epoch_end(self) -> None:
        self.log("val/loss", self.val_loss.compute())
        self.val_loss.reset()
        self._log_scores("val", self.val_scores)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._score(batch, self.test_scores)

    def on_test_epoch_end(self) -> None:
        self._log_scores("test", self.test_scores)

    def _log_scores(self, split: str, metrics: MetricCollection) -> None:
        values = metrics.compute()  # synchronised over processes by torchmetrics
        metrics.reset()
        self.log_dict({f"{split}/{name}": values[name] for name in METRICS}, prog_bar=True)

    # -- checkpoints: the global RNGs (head dropout) travel, so a resumed run draws the same ---

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[RNG_KEY] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._resumed_rng = checkpoint.get(RNG_KEY)

    def on_train_start(self) -> None:
        if self._resumed_rng is not None:
            set_rng_states(self._resumed_rng)
            self._resumed_rng = None

    # -- optimiser ----------------------------------------------------------------------------

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW with separate learning rates for the head and the (unfrozen) body, weight
        decay on matrices only, warm-up then cosine decay over the run's steps."""
        o = self.optim
        groups = []
        for module, lr in ((self.encoder, o["lr_body"]), (self.head, o["lr_head"])):
            trained = [p for p in module.parameters() if p.requires_grad]
            for params, decay in (
                ([p for p in trained if p.ndim >= 2], o["weight_decay"]),
                ([p for p in trained if p.ndim < 2], 0.0),
            ):
                if params:
                    groups.append({"params": params, "lr": lr, "weight_decay": decay})
        fused = fused_adamw(self, (p for g in groups for p in g["params"]))
        optimizer = torch.optim.AdamW(groups, betas=tuple(o["betas"]), fused=fused)
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: warmup_cosine(step, o["warmup_steps"], total, o["min_lr_ratio"]),
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
