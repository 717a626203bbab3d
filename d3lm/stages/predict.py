"""Predict with a fine-tuned run: class probabilities of every sequence of a file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from d3lm.data.tables import load_table
from d3lm.io import atomic_path, check_writable
from d3lm.rundir import RunDir
from d3lm.stages.classifier import load_classifier


def best_checkpoint(run: Path) -> Path:
    """A fine-tuning run's ``checkpoints/best.ckpt`` (else its last), or a checkpoint file."""
    run = Path(run)
    best = RunDir(run).best
    if run.is_file() or not run.exists():
        return run
    return best if best.exists() else RunDir(run).last_checkpoint()


@torch.inference_mode()
def predict(
    run: Path,
    data: str | Path,
    out: str | Path,
    batch_size: int = 256,
    cache_dir: str | Path = ".cache/d3lm",
) -> Path:
    """Class probabilities of every sequence of ``data`` (a sequence file; labels optional)
    under a fine-tuned run's best checkpoint, written atomically to the CSV ``out``: ``name``,
    one ``p_<class>`` per class, ``predicted``."""
    out = Path(out)
    check_writable(out, keep_folders=False)
    model = load_classifier(best_checkpoint(run)).eval()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    frame = load_table(str(data), Path(cache_dir))
    ids = model.encode(frame["sequence"].tolist(), frame["name"].astype(str).tolist(), str(data))
    probs = torch.cat(
        [model(chunk.to(device)).float().softmax(dim=-1).cpu() for chunk in ids.split(batch_size)]
    ).numpy()
    classes = list(model.hparams.classes)
    table = pd.DataFrame({"name": frame["name"].to_numpy()})
    for i, name in enumerate(classes):
        table[f"p_{name}"] = probs[:, i]
    table["predicted"] = [classes[i] for i in probs.argmax(axis=1)]
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    return out
