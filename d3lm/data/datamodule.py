"""LightningDataModule: a sequence table -> tokenised, padded tensors, batched by split."""

from __future__ import annotations

import lightning as L
import pandas as pd
import torch
from torch.utils.data import DataLoader, TensorDataset

from d3lm.tokenizers import Tokenizer


class SequenceDataModule(L.LightningDataModule):
    """Tokenises each split once (vectorised) and serves ``(ids,)`` batches.

    Padding is to the longest sequence of the split; the model derives its attention mask from
    ``tokenizer.pad_id``, so nothing else travels with the batch.
    """

    def __init__(
        self,
        table: pd.DataFrame,
        tokenizer: Tokenizer,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.table = table
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self._datasets: dict[str, TensorDataset] = {}

    def split_ids(self, split: str) -> torch.Tensor:
        rows = self.table[self.table["split"] == split]
        if rows.empty:
            raise ValueError(f"the data has no rows in split {split!r}")
        return self.tokenizer.batch_encode(list(rows["sequence"]), names=list(rows["name"]))

    def setup(self, stage: str | None = None) -> None:
        for split in ("train", "valid"):
            if split not in self._datasets:
                self._datasets[split] = TensorDataset(self.split_ids(split))

    def train_ids(self) -> torch.Tensor:
        """The tokenised training split, (N, L)."""
        self.setup("fit")
        return self._datasets["train"].tensors[0]

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            self._datasets[split],
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=shuffle,
            num_workers=self.num_workers,
            generator=generator,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", self.eval_batch_size, shuffle=False)
