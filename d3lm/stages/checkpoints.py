"""Reading d3lm checkpoints: weights-only, checked, every problem named with the file."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from d3lm.errors import D3lmError, NotFound
from d3lm.lit.diffusion_lm import DiffusionLM
from d3lm.rundir import RunDir

#: What every d3lm checkpoint holds, what a resume needs besides, and the model's hyperparameters.
CHECKPOINT_KEYS = ("state_dict", "hyper_parameters", "global_step")

RESUME_KEYS = ("optimizer_states", "lr_schedulers", "loops")

MODEL_HPARAMS = ("tokenizer", "model", "diffusion", "optim", "max_steps")


def read_checkpoint(
    path: Path, resume: bool = False, hparams: Sequence[str] = MODEL_HPARAMS
) -> dict[str, Any]:
    """A d3lm checkpoint, loaded weights-only (tensors and plain data, never code).

    An empty, truncated or foreign file, or one without what a model (``resume``: and the
    trainer) needs, is a D3lmError naming the file and the reason; ``hparams``: the
    hyperparameters the model is built from (a classifier's differ from a DiffusionLM's).
    """
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise D3lmError(f"{path}: empty file, not a checkpoint")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; its index is at the end
        raise D3lmError(f"{path}: not a checkpoint, or truncated (no complete torch archive)")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        raise D3lmError(
            f"{path}: not a d3lm checkpoint (it holds objects other than tensors and plain data)"
        ) from None
    except (RuntimeError, ValueError, EOFError, KeyError, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise D3lmError(f"{path}: unreadable checkpoint: {reason}") from None
    wanted = CHECKPOINT_KEYS + (RESUME_KEYS if resume else ())
    missing = [k for k in wanted if not isinstance(saved, dict) or k not in saved]
    if not missing:
        saved_hparams = saved["hyper_parameters"]
        saved_hparams = saved_hparams if isinstance(saved_hparams, dict) else {}
        missing = [f"hyper_parameters.{k}" for k in hparams if k not in saved_hparams]
    if missing:
        what = "a checkpoint to resume training from" if resume else "a d3lm checkpoint"
        raise D3lmError(f"{path}: not {what}: no {', '.join(missing)}")
    return saved


def load_weights(model: torch.nn.Module, saved: dict[str, Any], path: Path, what: str) -> None:
    """Load a checkpoint's weights into ``model``; weights that do not fit are a D3lmError."""
    try:
        result = model.load_state_dict(saved["state_dict"], strict=False)
    except RuntimeError as err:  # wrong shapes
        lines = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
        raise D3lmError(f"{path}: weights do not fit {what}: {'; '.join(lines[:2])}") from None
    wrong = [*result.missing_keys, *result.unexpected_keys]
    if wrong:
        raise D3lmError(
            f"{path}: weights do not fit {what}: {len(result.missing_keys)} missing and "
            f"{len(result.unexpected_keys)} unexpected tensors (first: {wrong[0]})"
        )


def load_model(run_dir: Path, checkpoint: Path | None = None) -> DiffusionLM:
    """The model of a run's last checkpoint (or of ``checkpoint``), checked as it is read."""
    path = Path(checkpoint or RunDir(run_dir).last_checkpoint())
    saved = read_checkpoint(path)
    hparams = saved["hyper_parameters"]
    model = DiffusionLM(
        **{k: hparams[k] for k in MODEL_HPARAMS},
        seed=hparams.get("seed", 0),
        conditioning=hparams.get("conditioning"),  # absent before conditioning existed
    )
    load_weights(model, saved, path, "the model its hyperparameters describe")
    return model.eval()
