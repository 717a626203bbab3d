"""A fine-tuning run's classifier: its backbone's origin, its tokenizer, its class weights."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from d3lm.config import FINETUNE_YAML, plain
from d3lm.errors import D3lmError
from d3lm.interop.conditions import without_condition_table
from d3lm.lit.classifier import OPTIM_DEFAULTS, SequenceClassifier
from d3lm.registry import TOKENIZERS
from d3lm.rundir import CHECKPOINTS, RunDir
from d3lm.stages.checkpoints import load_weights, read_checkpoint
from d3lm.stages.train import fitted_tokenizer
from d3lm.tasks import LabelledTable

#: What a classifier checkpoint must hold to be rebuilt (``d3lm predict``).
CLASSIFIER_HPARAMS = ("tokenizer", "model", "classes", "pooling", "head")

#: The ``init`` of a randomly initialised run (``checkpoint=none``): every table's baseline.
RANDOM = "random"

DEFAULT_TOKENIZER = {"name": "nt6mer", "params": {}}


def balanced_weights(y: np.ndarray, classes: Sequence[str]) -> list[float]:
    """n / (k * count_c): inverse training frequency, scaled so a balanced task gets all ones."""
    counts = np.bincount(y, minlength=len(classes))
    if not counts.all():
        raise D3lmError(
            f"class_weights=balanced: class {classes[int(np.argmin(counts))]!r} has no training "
            "records"
        )
    return (len(y) / (len(classes) * counts)).tolist()


CLASS_WEIGHTS: dict[str, Callable[[np.ndarray, Sequence[str]], list[float] | None]] = {
    "none": lambda y, classes: None,
    "balanced": balanced_weights,
}


@dataclass(frozen=True)
class Init:
    """Where a run's backbone comes from: a checkpoint's encoder, or random weights."""

    name: str  # the checkpoint's run name, or RANDOM
    path: Path | None  # the checkpoint file
    tokenizer: dict[str, Any] | None  # the checkpoint's (fitted) tokenizer section
    model: dict[str, Any]  # preset and params of the backbone
    weights: dict[str, Tensor] | None  # encoder weights, names relative to the encoder


def is_random(checkpoint: Any) -> bool:
    return checkpoint is None or str(checkpoint).lower() == "none"


def checkpoint_file(checkpoint: str) -> Path:
    """A run folder's ``checkpoints/last.ckpt``, or the file itself."""
    path = Path(checkpoint)
    return RunDir(path).last_checkpoint() if path.is_dir() else path


def init_name(checkpoint: Any) -> str:
    """The run a checkpoint comes from (its folder), ``random`` for none."""
    if is_random(checkpoint):
        return RANDOM
    path = Path(checkpoint)
    if path.suffix == ".ckpt":
        return path.parent.parent.name if path.parent.name == CHECKPOINTS else path.stem
    return path.name


def read_init(cfg: DictConfig) -> Init:
    """The backbone of a new run: the checkpoint's encoder (its LM head is dropped) with its
    tokenizer and model sections, or ``cfg.model`` for random init. Imported NT v2 runs hold
    weights and no optimiser state: only the weights are read."""
    if is_random(cfg.checkpoint):
        return Init(RANDOM, None, None, plain(cfg.model), None)
    default_model = OmegaConf.load(FINETUNE_YAML).model
    if plain(cfg.model) != plain(default_model):
        raise D3lmError(
            f"model.* applies to checkpoint=none only; {cfg.checkpoint} brings its own backbone"
        )
    path = checkpoint_file(str(cfg.checkpoint))
    saved = read_checkpoint(path)
    hparams = saved["hyper_parameters"]
    tok = hparams["tokenizer"]
    cls_id = TOKENIZERS.build(tok["name"], tok.get("params")).cls_id
    # a conditional run's encoder is read as its unconditional network (<cls> = the null token)
    state = without_condition_table(saved["state_dict"], path, cls_id)
    weights = {
        name.removeprefix("encoder."): tensor
        for name, tensor in state.items()
        if name.startswith("encoder.")
    }
    return Init(init_name(cfg.checkpoint), path, hparams["tokenizer"], hparams["model"], weights)


def _resolved(spec: dict[str, Any]) -> dict[str, Any]:
    """A tokenizer's params completed with its constructor's defaults."""
    signature = inspect.signature(TOKENIZERS.get(spec["name"]))
    defaults = {
        name: p.default
        for name, p in signature.parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    return {**defaults, **(spec.get("params") or {})}


def same_tokenizer(wanted: dict[str, Any], have: dict[str, Any]) -> bool:
    """Whether the checkpoint's tokenizer ``have`` is the one ``wanted``: the same plugin and
    the same value of every parameter ``wanted`` fixes (None, e.g. bpe's merges: learned)."""
    if wanted["name"] != have["name"]:
        return False
    have_params = _resolved(have)
    return all(
        have_params.get(key) == value
        for key, value in _resolved(wanted).items()
        if value is not None
    )


def describe_tokenizer(spec: dict[str, Any]) -> str:
    params = spec.get("params") or {}
    shown = [
        f"{k}=[{len(v)} items]" if isinstance(v, list) and len(v) > 4 else f"{k}={v!r}"
        for k, v in params.items()
    ]
    return f"{spec['name']}({', '.join(shown)})"


def choose_tokenizer(cfg: DictConfig, init: Init, frame: pd.DataFrame) -> dict[str, Any]:
    """The checkpoint's tokenizer (a different one asked for is a D3lmError naming the
    checkpoint file and both); for random init the config's, fitted on the training split
    when it learns (bpe), as a pretraining run would."""
    wanted = plain(cfg.tokenizer)
    if init.tokenizer is None:
        spec = wanted if wanted["name"] else DEFAULT_TOKENIZER
        fit = OmegaConf.create({"tokenizer": spec, "cache_dir": cfg.cache_dir})
        return fitted_tokenizer(fit, frame, None)
    if wanted["name"] is not None and not same_tokenizer(wanted, init.tokenizer):
        raise D3lmError(
            f"{init.path}: the checkpoint's tokenizer is {describe_tokenizer(init.tokenizer)}, "
            f"the config asks for {describe_tokenizer(wanted)}; its weights only know the "
            "checkpoint's token ids (tokenizer.name=null takes them)"
        )
    return init.tokenizer


def new_model(cfg: DictConfig, table: LabelledTable) -> SequenceClassifier:
    """The classifier of a new run, with the checkpoint's encoder weights loaded."""
    init = read_init(cfg)
    frame = table.frame
    train_y = frame.loc[frame["split"] == "train", "y"].to_numpy(dtype=np.int64)
    model = SequenceClassifier(
        tokenizer=choose_tokenizer(cfg, init, frame),
        model=init.model,
        classes=list(table.info.classes),
        pooling=cfg.pooling,
        head=plain(cfg.head),
        freeze=cfg.freeze,
        optim={key: plain(cfg[key]) for key in OPTIM_DEFAULTS},
        class_weights=CLASS_WEIGHTS[cfg.class_weights](train_y, table.info.classes),
        seed=cfg.seed,
    )
    if init.weights is not None:
        model.load_encoder(init.weights, init.path)
    return model


def load_classifier(path: Path, resume: bool = False) -> SequenceClassifier:
    """The classifier a fine-tuning checkpoint holds, checked as it is read."""
    saved = read_checkpoint(path, resume=resume, hparams=CLASSIFIER_HPARAMS)
    model = SequenceClassifier(**saved["hyper_parameters"])
    load_weights(model, saved, path, "the classifier its hyperparameters describe")
    return model


def encode_splits(
    model: SequenceClassifier, table: LabelledTable, optional: Collection[str] = ()
) -> dict[str, tuple[Tensor, Tensor]]:
    """(ids, class ids) of each split; a missing split (unless ``optional``: left out) or a
    record too long for the backbone is a D3lmError naming the task file (and the record)."""
    frame, source = table.frame, str(table.source)
    sizes = frame["split"].value_counts()
    out = {}
    for split in ("train", "valid", "test"):
        rows = frame[frame["split"] == split]
        if rows.empty and split in optional:
            continue
        if rows.empty:
            counts = ", ".join(f"{k} {v}" for k, v in sizes.items())
            raise D3lmError(f"{source}: no {split} records (records per split: {counts})")
        ids = model.encode(rows["sequence"].tolist(), rows["name"].astype(str).tolist(), source)
        out[split] = (ids, torch.tensor(rows["y"].to_numpy(dtype=np.int64)))
    return out
