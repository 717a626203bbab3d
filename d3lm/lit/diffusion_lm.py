"""DiffusionLM: NT v2 backbone + noise schedule + objective, trained by Lightning.

The constructor takes the config sections as plain dicts so that a checkpoint alone rebuilds the
model (``DiffusionLM.load_from_checkpoint``) with its tokenizer, schedule and objective.

Exact resume: the training noise of a step is drawn from a generator seeded by (seed, process
rank, step) alone, so a resumed run draws what an uninterrupted one would, with no generator
state to carry; checkpoints also carry the global RNGs (torch CPU and CUDA, numpy, python) for
any plugin that draws from them. The label dropout of a conditional model draws from a generator
of its own, seeded from the step's noise seed, so it is exact on resume too. A non-finite loss
stops training before the weights change, and non-finite weights are never saved.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterable
from typing import Any

import lightning as L
import numpy as np
import torch
from torchmetrics import MeanMetric

import d3lm.conditioning  # registers the conditioning plugins
import d3lm.diffusion  # noqa: F401  (registers schedules and objectives)
from d3lm.errors import D3lmError
from d3lm.model import LMHead, NTv2Encoder
from d3lm.registry import BACKBONES, CONDITIONINGS, OBJECTIVES, SCHEDULES, TOKENIZERS
from d3lm.tokenizers import Tokenizer

#: The checkpoint entry holding the global RNG states.
RNG_KEY = "d3lm_rng"

#: Mixed into a step's noise seed for its label dropout: a stream apart from the noise's.
DROP_STREAM = 1


def drop_seed(seed: int, rank: int, step: int) -> int:
    """The seed of the label dropout of ``step`` on process ``rank``."""
    noise = noise_seed(seed, rank, step)
    return int(np.random.SeedSequence((noise, DROP_STREAM)).generate_state(1, np.uint64)[0])


class NonFinite(D3lmError):
    """Training produced a non-finite loss or non-finite weights."""


def noise_seed(seed: int, rank: int, step: int) -> int:
    """The seed of the training noise of ``step`` on process ``rank``."""
    return int(np.random.SeedSequence((seed, rank, step)).generate_state(1, np.uint64)[0])


def rng_states() -> dict[str, Any]:
    """The global RNG states as plain data, which a weights-only ``torch.load`` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"][: torch.cuda.device_count()])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))


def warmup_cosine(step: int, warmup: int, total: int, floor: float) -> float:
    """LR multiplier: linear warm-up to 1, then cosine decay to ``floor`` at ``total`` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def fused_adamw(module: L.LightningModule, params: Iterable[torch.Tensor]) -> bool:
    """Whether AdamW runs fused (one kernel over all tensors): on CPU and CUDA, unless the run is
    mixed-precision, where Lightning refuses gradient clipping with a fused optimiser (it would
    unscale fp16 gradients itself); torch's foreach step, the CUDA default, runs there. The
    CPU default, a for-loop step, costs ~10 passes over every weight: at ``nt-v2-50m`` on a
    CPU that was seconds per step (BENCHMARKS.md)."""
    trainer = module._trainer
    if trainer is not None and "mixed" in str(trainer.precision):
        return False
    return all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)


class DiffusionLM(L.LightningModule):
    def __init__(
        self,
        tokenizer: dict[str, Any],
        model: dict[str, Any],
        diffusion: dict[str, Any],
        optim: dict[str, Any],
        max_steps: int,
        seed: int = 0,
        conditioning: dict[str, Any] | None = None,
    ) -> None:
        """``conditioning``: the plugin section with fitted params (None, as in checkpoints
        written before conditioning existed: unconditional)."""
        super().__init__()
        self.save_hyperparameters()
        self.tokenizer: Tokenizer = TOKENIZERS.build(tokenizer["name"], tokenizer.get("params"))
        vocab = self.tokenizer.vocab_size
        spec = conditioning or {"name": "none"}
        self.conditioning = CONDITIONINGS.build(spec["name"], spec.get("params"), first_id=vocab)
        condition_tokens = self.conditioning.n_tokens
        if condition_tokens and not self.tokenizer.add_cls:
            raise D3lmError(
                f"conditioning {spec['name']!r} puts its token in the <cls> slot; tokenizer "
                f"{tokenizer['name']!r} is set without one (add_cls false)"
            )
        config = BACKBONES.build(model["preset"], model.get("params"))
        self.backbone_config = dataclasses.replace(
            config, vocab_size=vocab, condition_tokens=condition_tokens
        )
        self.encoder = NTv2Encoder(self.backbone_config, self.tokenizer.nucleotide_codes())
        self.head = LMHead(self.backbone_config, self.encoder.embeddings)
        schedule = diffusion["schedule"]
        self.schedule = SCHEDULES.build(schedule["name"], schedule.get("params"))
        objective = diffusion["objective"]
        self.objective = OBJECTIVES.build(
            objective["name"],
            objective.get("params"),
            schedule=self.schedule,
            mask_id=self.tokenizer.mask_id,
        )
        # Over every id the network embeds: condition ids are special (never masked or scored)
        # and spell no nucleotide.
        special = torch.zeros(vocab + condition_tokens, dtype=torch.bool)
        special[self.tokenizer.special_ids] = True
        special[vocab:] = True
        self.register_buffer("special", special, persistent=False)
        if hasattr(self.objective, "set_real_tokens"):  # MLM draws random tokens from these
            self.objective.set_real_tokens(~special[:vocab])
        lengths = self.tokenizer.token_lengths
        lengths = torch.cat([lengths, lengths.new_zeros(condition_tokens)])
        self.register_buffer("token_lengths", lengths, persistent=False)
        self.val_loss = MeanMetric()
        self.val_bpn = MeanMetric()
        self._resumed_rng: dict[str, Any] | None = None

    @torch.no_grad()
    def init_output_bias(self, ids: torch.Tensor) -> None:
        """Start the LM head at the data's token frequencies (bias = log unigram, add-one).

        A fully masked position is best predicted by the unigram, which the head otherwise has
        to learn from a uniform start: this spends no training steps on it, so a short CPU run
        goes straight to learning context.
        """
        tokens = ids[~self.special[ids]]
        special = self.special[: self.tokenizer.vocab_size]  # the head's outputs
        counts = torch.bincount(tokens.flatten(), minlength=len(special)).double()
        counts[~special] += 1.0
        log_freq = (counts / counts.sum()).log()
        self.head.bias.copy_(log_freq.masked_fill(special, -30.0).to(self.head.bias))

    def forward(
        self,
        ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        at: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, L, vocab), or (N, vocab) at the ``at`` (B, L) positions only."""
        # The objective says how the network runs (causal for the AR baseline), so training,
        # validation and anything else calling the model agree with it.
        causal = self.objective.causal
        if at is not None and causal:  # the sparse last block is bidirectional only
            return self.head(self.encoder(ids, attention_mask, causal=True)[at])
        return self.head(self.encoder(ids, attention_mask, causal=causal, at=at))

    def _loss(
        self, ids: torch.Tensor, generator: torch.Generator | None = None, objective: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Return (loss, bits per nucleotide of the objective's NLL (the diffusion ELBO, or the
        exact AR NLL; None for a loss that bounds no likelihood, MLM's), nucleotides in the
        batch) under ``objective`` (default: the training objective)."""
        objective = objective or self.objective
        attention_mask: torch.Tensor | None = ids != self.tokenizer.pad_id
        if bool(attention_mask.all()):
            # No pads (fixed-length batches): no mask, so attention takes its fused kernels
            # (flash on GPU) instead of the masked fallback.
            attention_mask = None
        loss, stats = objective.loss(
            self, ids, ~self.special[ids], attention_mask=attention_mask, generator=generator
        )
        nucleotides = self.token_lengths[ids].sum()
        if "nll_nats" not in stats:
            return loss, None, nucleotides
        return loss, stats["nll_nats"] / nucleotides / math.log(2), nucleotides

    def training_step(self, batch: tuple[torch.Tensor], batch_idx: int) -> torch.Tensor:
        step = self.global_step
        ids = batch[0]
        drop = getattr(self.conditioning, "drop", None)  # label dropout (classifier-free guidance)
        if drop is not None:
            seed = drop_seed(self.hparams.seed, self.global_rank, step)
            ids = drop(ids, torch.Generator(device=self.device).manual_seed(seed))
        seed = noise_seed(self.hparams.seed, self.global_rank, step)
        loss, bpn, _ = self._loss(ids, torch.Generator(device=self.device).manual_seed(seed))
        values = {"train/loss": loss} if bpn is None else {"train/loss": loss, "train/bpn": bpn}
        # The mean over processes is what is logged, and a non-finite value on any process stops
        # them all here, before the weights change.
        shown = self.trainer.strategy.reduce(
            torch.stack(list(values.values())).detach(), reduce_op="mean"
        )
        if not bool(shown.isfinite().all()):
            what = f"training loss {shown[0].item():g}"
            what += "" if bpn is None else f" (bits/nt {shown[1].item():g})"
            raise NonFinite(f"{what} at step {step + 1}; stopped before the weights changed")
        self.log_dict(dict(zip(values, shown, strict=True)), prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor], batch_idx: int) -> None:
        # A fixed noise draw per batch makes validation curves comparable across steps and runs
        # (under DDP each process draws it for its share of the batch).
        generator = torch.Generator(device=self.device).manual_seed(self.hparams.seed + batch_idx)
        loss, bpn, nucleotides = self._loss(batch[0], generator)
        bound = getattr(self.objective, "bound", None)
        if bound is not None:  # MLM: val/bpn is the diffusion ELBO of the same network
            _, bpn, nucleotides = self._loss(batch[0], generator, bound)
        self.val_loss.update(loss, batch[0].shape[0])
        self.val_bpn.update(bpn, nucleotides)
        self.log_dict({"val/loss": self.val_loss, "val/bpn": self.val_bpn}, prog_bar=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        finite = torch.stack([p.detach().isfinite().all() for p in self.parameters()]).all()
        if not finite:
            raise NonFinite(f"the weights are not finite after step {self.global_step}; not saved")
        checkpoint[RNG_KEY] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._resumed_rng = checkpoint.get(RNG_KEY)  # absent in checkpoints of earlier versions

    def on_train_start(self) -> None:
        # Set here, after Lightning's restore and sanity check, right before the first step.
        if self._resumed_rng is not None:
            set_rng_states(self._resumed_rng)
            self._resumed_rng = None

    def configure_optimizers(self) -> dict[str, Any]:
        optim = self.hparams.optim
        decay = [p for p in self.parameters() if p.ndim >= 2]
        no_decay = [p for p in self.parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": optim["weight_decay"]},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=optim["lr"],
            betas=tuple(optim["betas"]),
            fused=fused_adamw(self, self.parameters()),
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: warmup_cosine(
                step, optim["warmup_steps"], self.hparams.max_steps, optim["min_lr_ratio"]
            ),
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
