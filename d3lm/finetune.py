"""Fine-tune any checkpoint on a labelled task, and predict with the result.

:func:`finetune` turns a config (``experiments/finetune.yaml``) into a run folder
``runs/<experiment>/<run>/``: ``config.yaml``, ``checkpoints/best.ckpt`` (best ``val/mcc``) and
``last.ckpt``, ``logs/`` (CSV logger) and ``metrics.json`` (the best checkpoint's validation and
test scores), plus tidy rows in ``results/<experiment>.csv``. What a user can get wrong (a
tokenizer other than the checkpoint's, a record longer than the backbone's context, a plugin
name) is refused before any training. A finished run is not redone; an interrupted one resumes
from ``last.ckpt``, with the data order and RNGs it would have had.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from d3lm import interrupt, runlock, runner
from d3lm.ablation import replace_rows
from d3lm.config import EXPERIMENTS_DIR, config_ranges, flatten, load_config
from d3lm.data.tables import load_table
from d3lm.devices import check_accelerator
from d3lm.errors import D3lmError
from d3lm.io import atomic_path, check_writable, write_text
from d3lm.lit.classifier import METRICS, OPTIM_DEFAULTS, SequenceClassifier
from d3lm.lit.labelled_data import LabelledData
from d3lm.model import CLASSIFIER_HEADS, POOLINGS
from d3lm.precision import AUTO, resolve
from d3lm.registry import TOKENIZERS
from d3lm.tasks import LabelledTable, load_task

FINETUNE_YAML = EXPERIMENTS_DIR / "finetune.yaml"
#: What a classifier checkpoint must hold to be rebuilt (``d3lm predict``).
CLASSIFIER_HPARAMS = ("tokenizer", "model", "classes", "pooling", "head")
#: The ``init`` of a randomly initialised run (``checkpoint=none``): every table's baseline.
RANDOM = "random"
DEFAULT_TOKENIZER = {"name": "nt6mer", "params": {}}
#: Table split -> the prefix its scores are logged under.
SCORED_SPLITS = {"valid": "val", "test": "test"}
#: Keys that say where or how a run computes, not what: rerunning with them changed is the run.
PLACE_KEYS = {
    "experiment",
    "run",
    "runs_dir",
    "results_dir",
    "cache_dir",
    "eval_batch_size",
    "num_workers",
    "trainer",
}

RANGES: dict[str, tuple[Callable[[float], bool], str]] = config_ranges(FINETUNE_YAML)


def load_finetune_config(
    files: Sequence[str | Path] = (), overrides: Sequence[str] = ()
) -> DictConfig:
    """finetune.yaml <- ``files`` <- ``key=value`` overrides; an undeclared key is an error."""
    return load_config(files=files, overrides=overrides, base_file=FINETUNE_YAML)


# -- class weights --------------------------------------------------------------------------------


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


# -- initialisation -------------------------------------------------------------------------------


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
    return runner.last_checkpoint(path) if path.is_dir() else path


def init_name(checkpoint: Any) -> str:
    """The run a checkpoint comes from (its folder), ``random`` for none."""
    if is_random(checkpoint):
        return RANDOM
    path = Path(checkpoint)
    if path.suffix == ".ckpt":
        return path.parent.parent.name if path.parent.name == "checkpoints" else path.stem
    return path.name


def read_init(cfg: DictConfig) -> Init:
    """The backbone of a new run: the checkpoint's encoder (its LM head is dropped) with its
    tokenizer and model sections, or ``cfg.model`` for random init. Imported NT v2 runs hold
    weights and no optimiser state: only the weights are read."""
    if is_random(cfg.checkpoint):
        return Init(RANDOM, None, None, _plain(cfg.model), None)
    default_model = OmegaConf.load(FINETUNE_YAML).model
    if _plain(cfg.model) != _plain(default_model):
        raise D3lmError(
            f"model.* applies to checkpoint=none only; {cfg.checkpoint} brings its own backbone"
        )
    path = checkpoint_file(str(cfg.checkpoint))
    saved = runner.read_checkpoint(path)
    hparams = saved["hyper_parameters"]
    weights = {
        name.removeprefix("encoder."): tensor
        for name, tensor in saved["state_dict"].items()
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
    wanted = _plain(cfg.tokenizer)
    if init.tokenizer is None:
        spec = wanted if wanted["name"] else DEFAULT_TOKENIZER
        fit = OmegaConf.create({"tokenizer": spec, "cache_dir": cfg.cache_dir})
        return runner.fitted_tokenizer(fit, frame, None)
    if wanted["name"] is not None and not same_tokenizer(wanted, init.tokenizer):
        raise D3lmError(
            f"{init.path}: the checkpoint's tokenizer is {describe_tokenizer(init.tokenizer)}, "
            f"the config asks for {describe_tokenizer(wanted)}; its weights only know the "
            "checkpoint's token ids (tokenizer.name=null takes them)"
        )
    return init.tokenizer


# -- runs -----------------------------------------------------------------------------------------


def task_label(task: str) -> str:
    """A registered task's name, or a label file's name without its suffixes."""
    path = Path(str(task))
    return path.name.split(".")[0] if path.suffix else str(task)


def run_folder(cfg: DictConfig) -> Path:
    name = cfg.run or f"{task_label(cfg.task)}-{init_name(cfg.checkpoint)}-seed{cfg.seed}"
    return Path(cfg.runs_dir) / cfg.experiment / name


def check_same_run(run_dir: Path, cfg: DictConfig) -> None:
    """A run folder that holds a checkpoint or results belongs to the config saved in it:
    rerunning it with other settings would mix two runs, so that is refused, naming a key."""
    saved_path = run_dir / "config.yaml"
    started = (run_dir / "metrics.json").exists() or (run_dir / "checkpoints/last.ckpt").exists()
    if not started or not saved_path.exists():
        return
    saved = flatten(OmegaConf.to_container(OmegaConf.load(saved_path), resolve=True))
    now = flatten(_plain(cfg))
    if now.get("trainer.precision") == AUTO:  # config.yaml holds what `auto` chose
        now["trainer.precision"] = saved.get("trainer.precision")
    differ = sorted(
        key
        for key in saved.keys() | now.keys()
        if key.split(".")[0] not in PLACE_KEYS and saved.get(key) != now.get(key)
    )
    if differ:
        key = differ[0]
        raise runner.RunExists(
            f"{run_dir} holds a run with other settings ({key}={saved.get(key)!r} there, "
            f"{now.get(key)!r} now); choose another run=NAME"
        )


def check_plugins(cfg: DictConfig) -> None:
    """Names the config gives (pooling, head, class weights, accelerator), checked before any
    work."""
    POOLINGS.get(cfg.pooling)
    check_accelerator("trainer.accelerator", cfg.trainer.accelerator)
    CLASSIFIER_HEADS.check(cfg.head.name, _plain(cfg.head.params))
    if cfg.class_weights not in CLASS_WEIGHTS:
        raise D3lmError(
            f"class_weights={cfg.class_weights!r}: expected one of {', '.join(CLASS_WEIGHTS)}"
        )


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
        head=_plain(cfg.head),
        freeze=cfg.freeze,
        optim={key: _plain(cfg[key]) for key in OPTIM_DEFAULTS},
        class_weights=CLASS_WEIGHTS[cfg.class_weights](train_y, table.info.classes),
        seed=cfg.seed,
    )
    if init.weights is not None:
        model.load_encoder(init.weights, init.path)
    return model


def load_classifier(path: Path, resume: bool = False) -> SequenceClassifier:
    """The classifier a fine-tuning checkpoint holds, checked as it is read."""
    saved = runner.read_checkpoint(path, resume=resume, hparams=CLASSIFIER_HPARAMS)
    model = SequenceClassifier(**saved["hyper_parameters"])
    runner.load_weights(model, saved, path, "the classifier its hyperparameters describe")
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


def build_trainer(
    cfg: DictConfig,
    run_dir: Path,
    total: int,
    callbacks: Sequence[L.Callback] = (),
    validate: bool = True,
) -> L.Trainer:
    """Validation every ``val_check_interval`` steps; the best ``val/mcc`` is kept as
    ``best.ckpt``, ``patience`` validations without improvement stop the run; every checkpoint
    is written atomically. Without ``validate`` (no validation split) the run trains all its
    steps and keeps ``last.ckpt`` alone, saved as often, for a resume."""
    t = cfg.trainer
    every = min(cfg.val_check_interval, total)
    if validate:
        watch: list[L.Callback] = [
            ModelCheckpoint(
                dirpath=run_dir / "checkpoints",
                filename="best",
                monitor="val/mcc",
                mode="max",
                save_top_k=1,
                save_last=True,
                auto_insert_metric_name=False,
                enable_version_counter=False,
            ),
            EarlyStopping(
                monitor="val/mcc", mode="max", patience=cfg.patience, check_on_train_epoch_end=False
            ),
        ]
    else:
        watch = [
            ModelCheckpoint(
                dirpath=run_dir / "checkpoints",
                every_n_train_steps=every,
                save_top_k=0,
                save_last=True,
            )
        ]
    return L.Trainer(
        max_steps=total,
        accelerator=t.accelerator,
        devices=t.devices,
        precision=resolve(t.precision, t.accelerator, Path(cfg.cache_dir)).precision,
        use_distributed_sampler=False,  # the data module shares out the global batches
        gradient_clip_val=t.gradient_clip_val,
        val_check_interval=every,
        limit_val_batches=None if validate else 0,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.enable_progress_bar,
        enable_model_summary=False,
        default_root_dir=run_dir,
        logger=CSVLogger(run_dir, name="logs"),
        callbacks=[
            *watch,
            LearningRateMonitor(logging_interval="step"),
            runner.WriteConfig(run_dir, cfg),
            runner.StopOnSignal(run_dir / "checkpoints" / "last.ckpt"),
            *callbacks,
        ],
        plugins=[runner.AtomicCheckpointIO()],
    )


def task_table(cfg: DictConfig) -> LabelledTable:
    """The labelled task a fine-tuning config names, with its params and split fractions."""
    return load_task(
        cfg.task,
        Path(cfg.cache_dir),
        valid_fraction=cfg.valid_fraction,
        test_fraction=cfg.test_fraction,
        num_classes=cfg.num_classes,
        params=_plain(cfg.task_params) or None,
    )


def finetune(
    cfg: DictConfig, callbacks: Sequence[L.Callback] = (), table: LabelledTable | None = None
) -> Path:
    """Fine-tune (or resume, or skip when finished) the run ``cfg`` describes; return its
    folder. ``table``: the task already loaded (default: ``load_task(cfg.task)``);
    ``callbacks`` are added to the trainer's. The run folder is locked while this process
    works in it (``runlock``); SIGTERM or SIGINT stops training at the end of a step with a
    checkpoint of that step (``runner.StopOnSignal``), from which the same call resumes."""
    runner.check_ranges(cfg, RANGES)
    check_plugins(cfg)
    run_dir = run_folder(cfg)
    with runlock.hold(run_dir):
        try:
            return _finetune(cfg, run_dir, callbacks, table)
        except interrupt.Interrupted as err:
            runner.stopped_at(err, run_dir, run_dir / "checkpoints" / "last.ckpt")
            raise


def _finetune(
    cfg: DictConfig,
    run_dir: Path,
    callbacks: Sequence[L.Callback],
    table: LabelledTable | None,
) -> Path:
    check_same_run(run_dir, cfg)
    done = run_dir / "metrics.json"
    if done.exists():
        write_rows(cfg, run_dir, json.loads(done.read_text(encoding="utf-8")))
        return run_dir
    if table is None:
        table = task_table(cfg)
    for note in table.notes:
        rank_zero_info(note)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    last = run_dir / "checkpoints" / "last.ckpt"
    resume = last.exists()
    model = load_classifier(last, resume=True) if resume else new_model(cfg, table)
    if list(model.hparams.classes) != list(table.info.classes):
        raise D3lmError(
            f"{last}: trained on classes {list(model.hparams.classes)}, the task has "
            f"{list(table.info.classes)}"
        )
    # valid_fraction=0 asks for no validation split: train every step, score the last one
    splits = encode_splits(model, table, optional=() if cfg.valid_fraction else ("valid",))
    validate = "valid" in splits
    data = LabelledData(splits, cfg.batch_size, cfg.eval_batch_size, cfg.seed, cfg.num_workers)
    if data.steps_per_epoch() < 1:
        raise D3lmError(
            f"{table.source}: {len(data.datasets['train'])} training records, fewer than one "
            f"batch of batch_size={cfg.batch_size}"
        )
    total = cfg.max_steps if cfg.max_epochs is None else cfg.max_epochs * data.steps_per_epoch()
    run_cfg = cfg.copy()
    run_cfg.run = run_dir.name
    trainer = build_trainer(run_cfg, run_dir, total, callbacks, validate)
    if cfg.batch_size % trainer.world_size:
        raise D3lmError(
            f"batch_size={cfg.batch_size} does not divide among {trainer.world_size} processes"
        )
    with interrupt.deferred():
        trainer.fit(model, datamodule=data, ckpt_path=last if resume else None, weights_only=True)
        trainer.save_checkpoint(last, weights_only=False)
    best = Path(trainer.checkpoint_callback.best_model_path) if validate else last
    metrics: dict[str, Any] = {
        "task": task_label(cfg.task),
        "init": init_name(cfg.checkpoint),
        "seed": cfg.seed,
        "classes": list(table.info.classes),
        "best_checkpoint": f"checkpoints/{best.name}",
        "best_step": runner.read_checkpoint(best, hparams=CLASSIFIER_HPARAMS)["global_step"],
        "steps": trainer.global_step,
        "git": runner.git_revision(),
        **({"notes": list(table.notes)} if table.notes else {}),
    }
    for split, prefix in SCORED_SPLITS.items():
        if split not in splits:
            continue
        evaluate = trainer.validate if split == "valid" else trainer.test
        scores = evaluate(model, datamodule=data, ckpt_path=best, verbose=False, weights_only=True)
        metrics[split] = {name: float(scores[0][f"{prefix}/{name}"]) for name in METRICS}
    if trainer.is_global_zero:
        write_text(done, json.dumps(metrics, indent=2) + "\n")
        write_rows(cfg, run_dir, metrics)
    return run_dir


def write_rows(cfg: DictConfig, run_dir: Path, metrics: dict[str, Any]) -> Path:
    """The run's tidy rows (one per split and metric) into results/<experiment>.csv, replacing
    its earlier rows, under a file lock."""
    path = Path(cfg.results_dir) / f"{cfg.experiment}.csv"
    rows = pd.DataFrame(
        [
            {
                "run": run_dir.name,
                "task": metrics["task"],
                "init": metrics["init"],
                "seed": metrics["seed"],
                "split": split,
                "metric": name,
                "value": metrics[split][name],
                "git": metrics["git"],
            }
            for split in SCORED_SPLITS
            if split in metrics
            for name in METRICS
        ]
    )
    replace_rows(path, rows, key="run")
    return path


def summary(run_dir: Path) -> str:
    """One line on a finished run: task, init, test scores and its folder, from metrics.json
    (a DDP process other than the first, which writes no metrics.json, names the folder)."""
    done = Path(run_dir) / "metrics.json"
    if not done.exists():
        return str(run_dir)
    metrics = json.loads(done.read_text(encoding="utf-8"))
    scores = ", ".join(f"{name} {metrics['test'][name]:.4f}" for name in METRICS)
    return f"{metrics['task']} (init {metrics['init']}): test {scores}; run {run_dir}"


# -- prediction -----------------------------------------------------------------------------------


def best_checkpoint(run: Path) -> Path:
    """A fine-tuning run's ``checkpoints/best.ckpt`` (else its last), or a checkpoint file."""
    run = Path(run)
    best = run / "checkpoints" / "best.ckpt"
    if run.is_file() or not run.exists():
        return run
    return best if best.exists() else runner.last_checkpoint(run)


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


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
