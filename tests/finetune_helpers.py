"""What the fine-tuning tests (tests/test_finetune_*.py) share: labelled tables with a motif planted
in one class, the settings of a micro classifier from random weights, and a fine-tuning config whose
runs, results and caches stay under the test's folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from d3lm.stages.finetune import load_finetune_config

MOTIFS = ("TGACGTCATGCA", "GGCCAATTGGCC")
#: Random init from scratch, with a tokenizer and pooling a small model learns fast.
RANDOM_INIT = (
    "model.preset=micro",
    "tokenizer.name=kmer",
    "tokenizer.params.k=3",
    "pooling=mean",
)


def planted(
    path: Path, n: int, motifs: tuple[str | None, ...], seed: int = 0, bp: int = 60
) -> Path:
    """A labelled CSV: class c holds ``motifs[c]`` (None: nothing) at a random place in uniform
    random DNA; splits drawn at random (70/15/15), classes in turn."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        seq = "".join(rng.choice(list("ACGT"), bp))
        label = i % len(motifs)
        motif = motifs[label]
        if motif is not None:
            at = int(rng.integers(0, bp - len(motif) + 1))
            seq = seq[:at] + motif + seq[at + len(motif) :]
        u = rng.random()
        split = "valid" if u < 0.15 else "test" if u < 0.3 else "train"
        rows.append({"name": f"r{i}", "sequence": seq, "label": f"c{label}", "split": split})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def config(root: Path, task: Path, *overrides: str) -> DictConfig:
    return load_finetune_config(
        overrides=[
            f"task={task}",
            f"runs_dir={root / 'runs'}",
            f"results_dir={root / 'results'}",
            f"cache_dir={root / 'cache'}",
            "batch_size=16",
            "max_steps=20",
            "val_check_interval=10",
            "warmup_steps=2",
            "lr_head=3e-3",
            "lr_body=3e-3",
            "trainer.log_every_n_steps=5",
            *overrides,
        ]
    )
