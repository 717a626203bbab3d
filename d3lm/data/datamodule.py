"""LightningDataModule: a sequence table -> tokenised, padded tensors, batched by split.

The data order is a pure function of the seed, and the processes of a DDP run split the very
batches one process would draw, so that

- a run killed mid-epoch resumes with the batch an uninterrupted run would draw next (the
  training loader's ``state_dict`` is the number of steps taken, which Lightning saves in every
  checkpoint), and
- N processes together train on exactly the batches of a one-process run with the same global
  batch, and validate on the same sequences.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

from d3lm.conditioning import Conditioning
from d3lm.conditioning.base import record_labels
from d3lm.errors import D3lmError
from d3lm.tokenizers import Tokenizer


class GlobalBatchSampler(Sampler[int]):
    """This process's indices of the training split, epoch after epoch.

    Epoch ``e`` is a permutation drawn from ``(seed, e)`` alone, cut into global batches of
    ``global_batch`` (the incomplete last one dropped); process ``rank`` of ``world`` takes slice
    ``rank`` of each. Lightning calls ``set_epoch`` at every epoch's start; ``start(step)`` puts
    the next iteration at training step ``step`` (a resume).
    """

    def __init__(self, n: int, global_batch: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.global_batch, self.seed = n, global_batch, seed
        self.rank, self.local_batch = rank, global_batch // world
        self.batches = n // global_batch
        self.epoch = 0
        self.offset = 0  # batches of this epoch already taken: the next iteration skips them

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.offset = epoch, 0

    def start(self, step: int) -> None:
        self.epoch, self.offset = divmod(step, self.batches)

    def __len__(self) -> int:
        # A whole epoch, also when resuming inside one: Lightning counts the epoch's batches
        # from its own restored position.
        return self.batches * self.local_batch

    def __iter__(self) -> Iterator[int]:
        order = np.random.default_rng((self.seed, self.epoch)).permutation(self.n)
        first, self.offset = self.offset, 0
        for b in range(first, self.batches):
            lo = b * self.global_batch + self.rank * self.local_batch
            yield from order[lo : lo + self.local_batch].tolist()


class ResumableLoader(DataLoader):
    """The training loader, resumable: Lightning saves its ``state_dict`` in each checkpoint.

    The state is the number of training steps taken, read from ``steps`` when the checkpoint is
    written; the loader's own count would include the batches Lightning has fetched ahead.
    """

    def __init__(
        self,
        dataset: TensorDataset,
        sampler: GlobalBatchSampler,
        steps: Callable[[], int],
        num_workers: int,
        seed: int,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=sampler.local_batch,
            sampler=sampler,
            drop_last=True,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            # its own generator: starting an epoch's iterator (one draw, for worker seeds)
            # leaves the global RNG, which the checkpoint restores, alone
            generator=torch.Generator().manual_seed(seed),
        )
        self.steps = steps

    def state_dict(self) -> dict[str, int]:
        return {"step": self.steps()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.start(state["step"])


class ValidationBatches(Sampler[list[int]]):
    """This process's validation batches: the sequences of the first ``limit`` batches of
    ``batch_size`` (None: the whole split), which one process would score, shared out in
    contiguous blocks and batched by ``batch_size / world`` (rounded up). All processes together
    score the one-process set, and each gets a batch while there are as many sequences."""

    def __init__(
        self, n: int, batch_size: int, limit: int | None = None, rank: int = 0, world: int = 1
    ) -> None:
        total = n if limit is None else min(n, limit * batch_size)
        self.indices = range(rank * total // world, (rank + 1) * total // world)
        self.size = -(-batch_size // world)

    def __len__(self) -> int:
        return -(-len(self.indices) // self.size)

    def __iter__(self) -> Iterator[list[int]]:
        for lo in range(0, len(self.indices), self.size):
            yield list(self.indices[lo : lo + self.size])


class GlobalBatchData(L.LightningDataModule):
    """Loaders shared by pretraining and fine-tuning: the training order is a function of the
    seed alone and resumes at the trainer's step; each DDP process takes its slice of every
    global batch (``batch_size``) and its share of the evaluation batches."""

    batch_size: int
    eval_batch_size: int
    seed: int
    num_workers: int

    def _ranks(self) -> tuple[int, int]:
        """(this process's rank, processes), (0, 1) outside a trainer."""
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer else (0, 1)

    def _steps(self) -> int:
        return self.trainer.global_step if self.trainer else 0

    def train_loader(self, dataset: TensorDataset) -> DataLoader:
        rank, world = self._ranks()
        sampler = GlobalBatchSampler(len(dataset), self.batch_size, self.seed, rank, world)
        return ResumableLoader(dataset, sampler, self._steps, self.num_workers, self.seed)

    def eval_loader(self, dataset: TensorDataset, limit: int | None = None) -> DataLoader:
        rank, world = self._ranks()
        batches = ValidationBatches(len(dataset), self.eval_batch_size, limit, rank, world)
        return DataLoader(
            dataset,
            batch_sampler=batches,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )


class SequenceDataModule(GlobalBatchData):
    """Tokenises each split once (vectorised) and serves ``(ids,)`` batches.

    ``batch_size`` is the global batch: sequences per optimiser step over all processes, each
    taking ``batch_size / world_size``; the ``limit_val_batches`` validation batches of
    ``eval_batch_size`` (None: all) are shared out alike. Padding is to the longest sequence of
    the split; the model derives its attention mask from ``tokenizer.pad_id``, so nothing else
    travels with the batch. ``source`` names the data in error messages.

    A labelled ``conditioning`` (one with ``encode``) writes each record's condition token into
    its ids, so the label travels inside the batch; the training step drops it, never this.
    """

    def __init__(
        self,
        table: pd.DataFrame,
        tokenizer: Tokenizer,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        limit_val_batches: int | None = None,
        source: str = "the data",
        conditioning: Conditioning | None = None,
    ) -> None:
        super().__init__()
        self.table = table
        self.tokenizer = tokenizer
        self.conditioning = conditioning
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.limit_val_batches = limit_val_batches
        self.source = source
        self._datasets: dict[str, TensorDataset] = {}

    def split_sizes(self) -> dict[str, int]:
        counts = self.table["split"].value_counts()
        return {split: int(counts.get(split, 0)) for split in ("train", "valid", "test")}

    def check(self, world_size: int = 1) -> None:
        """Refuse, before training starts, data too small for one step or for one validation
        batch per process, and a global batch that does not split evenly among the processes."""
        sizes = self.split_sizes()
        counts = ", ".join(f"{k} {v}" for k, v in sizes.items())
        if self.batch_size % world_size:
            raise D3lmError(
                f"data.batch_size={self.batch_size} (the global batch) does not divide evenly "
                f"among {world_size} processes"
            )
        if sizes["train"] < self.batch_size:
            raise D3lmError(
                f"{self.source}: {sizes['train']} training sequences, fewer than one batch of "
                f"data.batch_size={self.batch_size} (sequences per split: {counts})"
            )
        if self.limit_val_batches == 0:
            return
        if sizes["valid"] == 0:
            raise D3lmError(
                f"{self.source}: no validation sequences (sequences per split: {counts}); "
                "a file without a split column takes data.valid_fraction of its records "
                "(to train without validation: trainer.limit_val_batches=0)"
            )
        share = ValidationBatches(sizes["valid"], self.eval_batch_size, self.limit_val_batches)
        used = len(share.indices)
        if used < world_size:
            raise D3lmError(
                f"{self.source}: {used} validation sequences (trainer.limit_val_batches="
                f"{self.limit_val_batches} of data.eval_batch_size={self.eval_batch_size}, "
                f"{sizes['valid']} in the split) for {world_size} processes: each needs one"
            )

    def split_ids(self, split: str) -> torch.Tensor:
        rows = self.table[self.table["split"] == split]
        if rows.empty:
            raise D3lmError(f"{self.source}: no sequences in split {split!r}")
        names = list(rows["name"])
        ids = self.tokenizer.batch_encode(list(rows["sequence"]), names=names)
        encode = getattr(self.conditioning, "encode", None)
        if encode is None:
            return ids
        where = f"{self.source} ({split} split)"
        try:
            return encode(ids, list(record_labels(rows, where)), names)
        except D3lmError as err:  # a label the model has no class for
            raise D3lmError(f"{where}: {err}") from None

    def setup(self, stage: str | None = None) -> None:
        validated = self.limit_val_batches != 0  # else there may be no validation split at all
        for split in ("train", "valid") if validated else ("train",):
            if split not in self._datasets:
                self._datasets[split] = TensorDataset(self.split_ids(split))

    def train_ids(self) -> torch.Tensor:
        """The tokenised training split, (N, L)."""
        self.setup("fit")
        return self._datasets["train"].tensors[0]

    def train_dataloader(self) -> DataLoader:
        return self.train_loader(self._datasets["train"])

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader(self._datasets["valid"], self.limit_val_batches)
