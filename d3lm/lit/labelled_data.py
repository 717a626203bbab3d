"""LightningDataModule of a labelled task: ``(ids, y)`` batches of pre-encoded splits.

It reuses the pretraining data module's samplers, so fine-tuning has the same guarantees: the
data order is a function of the seed alone, a resumed run continues with the batch an
uninterrupted one would draw next, and DDP processes share out the one-process batches.
"""

from __future__ import annotations

from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from d3lm.data.datamodule import GlobalBatchData


class LabelledData(GlobalBatchData):
    """``splits``: {"train" | "valid" | "test": (ids (N, L), class ids (N,))}; ``batch_size``
    is the global batch of a training step, ``eval_batch_size`` that of evaluation."""

    def __init__(
        self,
        splits: dict[str, tuple[Tensor, Tensor]],
        batch_size: int,
        eval_batch_size: int,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.datasets = {name: TensorDataset(ids, y) for name, (ids, y) in splits.items()}
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.seed, self.num_workers = seed, num_workers

    def steps_per_epoch(self) -> int:
        return len(self.datasets["train"]) // self.batch_size

    def train_dataloader(self) -> DataLoader:
        return self.train_loader(self.datasets["train"])

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader(self.datasets["valid"])

    def test_dataloader(self) -> DataLoader:
        return self.eval_loader(self.datasets["test"])
