"""Config -> train -> sample -> evaluate -> result rows, one function per stage.

A run lives in ``runs/<experiment>/<run>/``: ``config.yaml`` (resolved), ``checkpoints/``,
``logs/metrics.csv``, ``samples.fasta``, ``metrics.json``. Every file is written atomically and
``resume=<run folder>`` continues training from ``checkpoints/last.ckpt``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import os
import pickle
import shutil
import subprocess
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_only
from omegaconf import DictConfig, OmegaConf

from d3lm import interrupt, runlock
from d3lm.config import BASE_YAML, config_ranges, flatten
from d3lm.data.datamodule import SequenceDataModule
from d3lm.data.fasta import read_fasta, write_fasta
from d3lm.data.tables import load_table
from d3lm.devices import check_accelerator, check_device
from d3lm.errors import D3lmError, NotFound
from d3lm.evaluate import EvaluateOptions, build_extractors, evaluate_samples, write_metrics
from d3lm.io import atomic_path, check_writable, write_text
from d3lm.lit.diffusion_lm import DiffusionLM, NonFinite
from d3lm.metrics.motifs import MotifScanner
from d3lm.params import SEED
from d3lm.plugins import load_plugins
from d3lm.precision import AUTO, Choice, resolve
from d3lm.registry import SAMPLERS, TOKENIZERS
from d3lm.sampling import workers as sampling_workers
from d3lm.sampling.causal import network_denoiser

GENERATED = "generated"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints go to a temporary file first, so an interrupted save never corrupts last.ckpt."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike[str], storage_options: Any = None
    ) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


class CPUTime(L.Callback):
    """Logs ``time/cpu_s``: this process's CPU seconds spent in training so far, carried across
    resumes, so learning curves can be drawn against compute on a shared or throttled machine."""

    def __init__(self) -> None:
        self.spent = 0.0
        self.start = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.process_time()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        pl_module.log("time/cpu_s", self.spent + time.process_time() - self.start)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.spent += time.process_time() - self.start

    def state_dict(self) -> dict[str, float]:
        return {"spent": self.spent + time.process_time() - self.start}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self.spent = state_dict["spent"]


def new_run_dir(cfg: DictConfig) -> Path:
    name = cfg.run or time.strftime("%Y%m%d-%H%M%S")
    return Path(cfg.runs_dir) / cfg.experiment / name


class RunExists(D3lmError, FileExistsError):
    """A new run was given the folder of a run that has a checkpoint."""


class WriteConfig(L.Callback):
    """Writes the run's ``config.yaml`` (rank 0) when training starts: after a resume's
    checkpoint has been restored, so a resume that fails leaves the saved config as it was.
    ``trainer.precision: auto`` is written as what it chose, so a resume keeps it."""

    def __init__(self, run_dir: Path, cfg: DictConfig) -> None:
        self.path, self.cfg = Path(run_dir) / "config.yaml", cfg

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            cfg = self.cfg
            if OmegaConf.select(cfg, "trainer.precision") == AUTO:
                cfg = OmegaConf.merge(cfg, {"trainer": {"precision": trainer.precision}})
            write_text(self.path, OmegaConf.to_yaml(cfg))


class StopOnSignal(L.Callback):
    """Stops training on SIGTERM or SIGINT (noted by ``interrupt.deferred`` around ``fit``) after
    a step: saves a checkpoint of that step where and as the periodic ones are saved
    (``on_train_batch_end``, atomically), so a resume loses nothing and continues bit for bit,
    and raises ``Interrupted`` as the next step starts, once the step's log row is written.
    Under DDP the ranks agree first, so all save and stop at one step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.signum = 0  #: the signal a checkpoint was saved for

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        interrupt.take_back()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        interrupt.take_back()
        signum = self._agreed(trainer)
        if signum:  # nothing trained in this session yet: nothing to save
            raise interrupt.Interrupted(signum)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        self.signum = self._agreed(trainer)
        if self.signum:
            trainer.save_checkpoint(self.path, weights_only=False)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        if self.signum:
            raise interrupt.Interrupted(self.signum)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        interrupt.drop()  # a signal in the last step: the run is finished, nothing to stop

    def _agreed(self, trainer: L.Trainer) -> int:
        """The signal noted on any rank, or 0."""
        signum = interrupt.pending()
        if trainer.world_size > 1:
            noted = torch.tensor(signum, device=trainer.strategy.root_device)
            signum = int(trainer.strategy.reduce(noted, reduce_op="max"))
        return signum


def stopped_at(err: interrupt.Interrupted, run_dir: Path, last: Path) -> None:
    """Say where an interrupted training left ``run_dir``: its checkpoint's step, or none."""
    if last.exists():
        step = read_checkpoint(last, hparams=())["global_step"]
        err.where = err.where or f"{run_dir} stopped at step {step}, saved in {last}"
        err.run_dir = run_dir
    else:
        err.where = err.where or f"{run_dir} stopped before its first checkpoint"


class PrecisionNote(L.Callback):
    """Says what ``trainer.precision: auto`` chose and why, as training starts: one line on the
    Lightning logger (stderr) and ``precision``/``precision_reason`` in the session's
    ``logs/version_<k>/hparams.yaml``."""

    def __init__(self, choice: Choice) -> None:
        self.choice = choice

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rank_zero_info(self.choice.line())
        if trainer.is_global_zero and trainer.logger is not None:
            trainer.logger.log_hyperparams(
                {"precision": self.choice.precision, "precision_reason": self.choice.reason}
            )


def session_precision(cfg: DictConfig, run_dir: Path) -> Choice:
    """This session's ``trainer.precision``: ``auto`` resolves on this machine
    (``precision.resolve``), except in a resumed run, which keeps what its config.yaml
    recorded (an ablation resumes with the grid's ``auto``)."""
    requested = cfg.trainer.precision
    saved = Path(run_dir) / "config.yaml"
    if requested == AUTO and cfg.resume and saved.is_file():
        kept = OmegaConf.select(OmegaConf.load(saved), "trainer.precision")
        if kept not in (None, AUTO):
            return Choice(
                resolve(kept, cfg.trainer.accelerator, None).precision, f"kept from {saved}"
            )
    return resolve(requested, cfg.trainer.accelerator, Path(cfg.cache_dir))


#: The rules of base.yaml's keys (:data:`d3lm.params.CONFIG_RANGES`) but ``sample.*``
#: (:data:`SAMPLE_RANGES`); ``train`` refuses values outside them before starting.
RANGES: dict[str, tuple[Callable[[float], bool], str]] = config_ranges(BASE_YAML, ["sample"])
#: What ``sample`` refuses, null included; grids and sweeps check them before they train.
SAMPLE_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    **{
        f"sample.{key}": (lambda v: isinstance(v, int) and v >= 1, "a positive integer")
        for key in ("n", "bp", "batch_size")
    },
    "sample.seed": SEED,
}


def check_ranges(
    cfg: DictConfig, ranges: dict[str, tuple[Callable[[float], bool], str]] = RANGES
) -> None:
    for key, (ok, wanted) in ranges.items():
        value = OmegaConf.select(cfg, key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise D3lmError(f"{key}={value!r}: expected a number ({wanted})")
        if not ok(value):
            raise D3lmError(f"{key}={value!r}: must be {wanted}")


#: What every d3lm checkpoint holds, what a resume needs besides, and the model's hyperparameters.
CHECKPOINT_KEYS = ("state_dict", "hyper_parameters", "global_step")
RESUME_KEYS = ("optimizer_states", "lr_schedulers", "loops")
MODEL_HPARAMS = ("tokenizer", "model", "diffusion", "optim", "max_steps")


def last_checkpoint(run_dir: Path) -> Path:
    path = Path(run_dir) / "checkpoints" / "last.ckpt"
    if not path.exists():
        raise NotFound(f"{run_dir}: no checkpoints/last.ckpt to resume or sample from")
    return path


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


def load_weights(model: DiffusionLM, saved: dict[str, Any], path: Path, what: str) -> None:
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


def data_table(cfg: DictConfig) -> pd.DataFrame:
    d = cfg.data
    params = OmegaConf.to_container(d.params, resolve=True)
    assert isinstance(params, dict)
    return load_table(d.dataset, Path(cfg.cache_dir), d.valid_fraction, d.test_fraction, params)


def build_datamodule(
    cfg: DictConfig, tokenizer: Any, table: pd.DataFrame | None = None
) -> SequenceDataModule:
    return SequenceDataModule(
        data_table(cfg) if table is None else table,
        tokenizer,
        batch_size=cfg.data.batch_size,
        eval_batch_size=cfg.data.eval_batch_size,
        num_workers=cfg.data.num_workers,
        seed=cfg.seed,
        limit_val_batches=cfg.trainer.limit_val_batches,
        source=f"data.dataset={cfg.data.dataset}",
    )


def build_trainer(
    cfg: DictConfig, run_dir: Path, callbacks: Sequence[L.Callback] = ()
) -> L.Trainer:
    """The run's trainer; ``callbacks`` come after the run's own (a sweep's pruning hook).

    Under DDP the datamodule shares out the batches itself (``use_distributed_sampler=False``):
    each process takes its slice of the global batch, in the one-process order.
    """
    t = cfg.trainer
    check_accelerator("trainer.accelerator", t.accelerator)
    precision = session_precision(cfg, run_dir)
    every = min(t.checkpoint_every_n_steps, t.max_steps)
    return L.Trainer(
        max_steps=t.max_steps,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        use_distributed_sampler=False,
        precision=precision.precision,
        gradient_clip_val=t.gradient_clip_val,
        val_check_interval=min(t.val_check_interval, t.max_steps),
        check_val_every_n_epoch=None,
        limit_val_batches=None if t.limit_val_batches else 0,  # the datamodule applies it
        log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.enable_progress_bar,
        default_root_dir=run_dir,
        # One version_<k> folder per session (first run, each resume): nothing is overwritten.
        logger=CSVLogger(run_dir, name="logs"),
        callbacks=[
            ModelCheckpoint(
                dirpath=run_dir / "checkpoints",
                every_n_train_steps=every,
                save_top_k=0,
                save_last=True,
            ),
            LearningRateMonitor(logging_interval="step"),
            CPUTime(),
            StopOnSignal(run_dir / "checkpoints" / "last.ckpt"),
            *([PrecisionNote(precision)] if precision.reason else []),
            *callbacks,
        ],
        plugins=[AtomicCheckpointIO()],
    )


def train(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> Path:
    """Train (or resume) a DiffusionLM with ``callbacks`` added to the trainer's; return the run
    folder.

    Everything is checked before the trainer starts: value ranges, a resume's checkpoint and that
    this config's model fits its weights, the data's split sizes. ``config.yaml`` is written as
    training starts, so a failed resume leaves the run as it was; a new run that fails before its
    first checkpoint leaves no folder behind. A non-finite loss stops the run, keeping the last
    checkpoint. SIGTERM or SIGINT stops it at the end of a step with a checkpoint of that step
    (``Interrupted``); a new run's config naming a folder that holds an unfinished run of the
    same settings resumes it, so the same command run again continues (a SLURM requeue).
    The run folder is locked for this process while it trains (``runlock``).
    """
    check_ranges(cfg)
    run_dir = Path(cfg.resume) if cfg.resume else new_run_dir(cfg)
    with runlock.hold(run_dir):
        try:
            return _train(cfg, run_dir, callbacks)
        except interrupt.Interrupted as err:
            stopped_at(err, run_dir, run_dir / "checkpoints" / "last.ckpt")
            raise


def _train(cfg: DictConfig, run_dir: Path, callbacks: Sequence[L.Callback]) -> Path:
    last = run_dir / "checkpoints" / "last.ckpt"
    if not cfg.resume and last.exists():
        cfg = continue_run(cfg, run_dir)
    saved = read_checkpoint(last_checkpoint(run_dir), resume=True) if cfg.resume else None
    if saved is not None and saved["global_step"] >= cfg.trainer.max_steps:
        raise D3lmError(
            f"{last}: trained {saved['global_step']} steps already; "
            f"trainer.max_steps={cfg.trainer.max_steps} asks for no more"
        )
    trainer = build_trainer(cfg, run_dir, [WriteConfig(run_dir, cfg), *callbacks])
    if trainer.world_size > 1 and not cfg.run and not cfg.resume:
        raise D3lmError(
            f"{trainer.world_size} processes need run=NAME, so that all write to one run folder"
        )
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    table = data_table(cfg)
    model = build_model(cfg, fitted_tokenizer(cfg, table, saved))
    datamodule = build_datamodule(cfg, model.tokenizer, table)
    datamodule.check(trainer.world_size)
    if saved is not None:
        load_weights(model, saved, last, "the model this config describes")
    elif cfg.model.init_output_bias:
        model.init_output_bias(datamodule.train_ids())
    if compile_blocks(cfg.trainer.compile, trainer.strategy.root_device):
        for layer in model.encoder.layers[:-1]:  # the last block's shapes follow the mask
            layer.compile()  # in place: parameter names and checkpoints stay as they are
    new = saved is None and trainer.is_global_zero
    if new:
        _discard(run_dir)  # what a run killed before its first checkpoint left
    try:
        resume = last if saved is not None else None
        with interrupt.deferred():
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume, weights_only=True)
            trainer.save_checkpoint(last, weights_only=False)  # the whole state, not weights only
    except BaseException as err:
        kept = last.exists()
        if new and not kept:
            _discard(run_dir)
        if isinstance(err, NonFinite):
            where = (
                f"the last checkpoint is kept ({last}, step {read_checkpoint(last)['global_step']})"
                if kept
                else "no checkpoint had been written, so the run folder is removed"
            )
            raise D3lmError(f"{run_dir}: {err}; {where}") from None
        raise
    return run_dir


#: Keys that say where a run lives, not what it trains: ``run`` is null in the config of a run
#: named by its start time, which a continuing command names.
FOLDER_KEYS = {"resume", "run", "runs_dir", "experiment"}


def continue_run(cfg: DictConfig, run_dir: Path) -> DictConfig:
    """``cfg`` resuming ``run_dir``, an unfinished run whose ``config.yaml`` holds the same
    settings (``trainer.precision: auto`` matches what it chose): the same command run again
    continues the run. A finished run, or one of other settings, is refused (``RunExists``)."""
    hint = f"resume it with resume={run_dir}"
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise RunExists(f"{run_dir} holds a run already; {hint}")
    before, now = flatten(_plain(OmegaConf.load(saved))), flatten(_plain(cfg))
    if now.get("trainer.precision") == AUTO:
        now["trainer.precision"] = before.get("trainer.precision")
    keys = (before.keys() | now.keys()) - FOLDER_KEYS
    differ = sorted(k for k in keys if before.get(k) != now.get(k))
    if differ:
        key = differ[0]
        raise RunExists(
            f"{run_dir} holds a run with other settings ({key}={before.get(key)!r} there, "
            f"{now.get(key)!r} now); {hint}, or choose another run=NAME"
        )
    step = read_checkpoint(last_checkpoint(run_dir))["global_step"]
    if step >= cfg.trainer.max_steps:
        raise RunExists(f"{run_dir} holds a run already ({step} steps trained); {hint}")
    rank_zero_info(f"{run_dir}: continuing it from step {step} (the settings it was started with)")
    resumed = cfg.copy()
    resumed.resume = str(run_dir)
    return resumed


def compile_blocks(value: Any, device: torch.device) -> bool:
    """``trainer.compile``: ``auto`` compiles the encoder blocks on a GPU, where it paid
    (+17 to 25 % in bf16 at nt-v2-50m, 5 to 9 s of compiling), not on a CPU (+3 % to -6 %
    at nt-v2-50m, 26 to 30 s of compiling; BENCHMARKS.md)."""
    if value == AUTO:
        chosen = device.type == "cuda"
        rank_zero_info(f"compile auto -> {'on' if chosen else 'off'} ({device.type})")
        return chosen
    if not isinstance(value, bool):
        raise D3lmError(f"trainer.compile={value!r}: expected auto, true or false")
    return value


def build_model(cfg: DictConfig, tokenizer: dict[str, Any] | None = None) -> DiffusionLM:
    """The untrained module a config describes; ``tokenizer``: the fitted tokenizer section
    (default: the config's, for tokenizers that learn nothing)."""
    return DiffusionLM(
        tokenizer=tokenizer or _plain(cfg.tokenizer),
        model=_plain(cfg.model),
        diffusion=_plain(cfg.diffusion),
        optim=_plain(cfg.optim),
        max_steps=cfg.trainer.max_steps,
        seed=cfg.seed,
    )


def _discard(run_dir: Path) -> None:
    """Remove what a new run writes before its first checkpoint, then its folder if empty."""
    with contextlib.suppress(FileNotFoundError):
        (run_dir / "config.yaml").unlink()
    for sub in ("logs", "checkpoints"):
        shutil.rmtree(run_dir / sub, ignore_errors=True)
    with contextlib.suppress(OSError):
        run_dir.rmdir()


def fitted_tokenizer(
    cfg: DictConfig, table: pd.DataFrame, saved: dict[str, Any] | None
) -> dict[str, Any]:
    """The tokenizer section the model is built with (and saves in its hyperparameters).

    A new run lets the plugin learn from the training split (``Tokenizer.fit``; fixed tokenisers
    learn nothing), cached under ``cache_dir/tokenizers`` by a hash of the plugin, its params
    and the split, so an ablation grid fits once; a resumed run keeps its checkpoint's, the ids
    its weights were trained on (``saved``: its checkpoint).
    """
    if saved is not None:
        return saved["hyper_parameters"]["tokenizer"]
    spec = _plain(cfg.tokenizer)
    params = spec.get("params") or {}
    train = table.loc[table["split"] == "train", "sequence"].tolist()
    digest = hashlib.sha256(json.dumps([spec["name"], params], sort_keys=True).encode())
    digest.update("\n".join(train).encode())
    cached = Path(cfg.cache_dir) / "tokenizers" / f"{spec['name']}-{digest.hexdigest()[:16]}.json"
    if cached.exists():
        return {**spec, "params": json.loads(cached.read_text(encoding="utf-8"))}
    fitted = TOKENIZERS.get(spec["name"]).fit(train, params)
    if fitted != params:
        write_text(cached, json.dumps(fitted))
    return {**spec, "params": fitted}


def load_model(run_dir: Path, checkpoint: Path | None = None) -> DiffusionLM:
    """The model of a run's last checkpoint (or of ``checkpoint``), checked as it is read."""
    path = Path(checkpoint or last_checkpoint(run_dir))
    saved = read_checkpoint(path)
    hparams = saved["hyper_parameters"]
    model = DiffusionLM(**{k: hparams[k] for k in MODEL_HPARAMS}, seed=hparams.get("seed", 0))
    load_weights(model, saved, path, "the model its hyperparameters describe")
    return model.eval()


def sample(
    cfg: DictConfig, run_dir: Path, out: Path | None = None, trace: Path | None = None
) -> Path:
    """Generate ``cfg.sample.n`` sequences of exactly ``cfg.sample.bp`` bp into a FASTA file.

    ``sample.device`` (``auto``: the GPU when there is one) runs the network. On the CPU,
    ``sample.workers`` processes (``auto``: one per core, at most one per batch) sample
    contiguous runs of whole batches, each loading the checkpoint itself; the output is the
    same for any count. A GPU is driven by one process.
    """
    s = cfg.sample
    for key, (ok, wanted) in SAMPLE_RANGES.items():
        if not ok(OmegaConf.select(cfg, key)):
            raise D3lmError(f"{key}={OmegaConf.select(cfg, key)!r}: must be {wanted}")
    batches = -(-s.n // s.batch_size)
    workers = min(sampling_workers.resolve(s.workers, "sample.workers", batches), s.n)
    if sample_device(s.device).type != "cpu":
        workers = 1
    out = Path(out or Path(run_dir) / "samples.fasta")
    check_writable(out, keep_folders=False)  # before the work, not after it
    checkpoint = last_checkpoint(run_dir)  # one file for every worker, even if training goes on
    model = load_model(run_dir, checkpoint)
    check_context(model, s.bp, run_dir)
    job = functools.partial(_sample_range, cfg, Path(run_dir), checkpoint)  # workers load it
    if workers == 1:  # in this process: the model loaded above, and its progress bar
        job = functools.partial(job, model=model, progress=s.progress)
    parts = sampling_workers.run(job, s.n, workers, s.batch_size)
    ids = torch.cat([p[0] for p in parts])
    tok = model.tokenizer
    sequences = [tok.decode(row) for row in ids]
    wrong = [i for i, seq in enumerate(sequences) if len(seq) != s.bp]
    if wrong:
        raise RuntimeError(
            f"sampler {s.sampler.name!r} returned {len(wrong)} sequences that are "
            f"not {s.bp} bp (first: index {wrong[0]})"
        )
    write_fasta(
        out,
        ((f"{cfg.experiment}/{Path(run_dir).name}/{i}", seq) for i, seq in enumerate(sequences)),
    )
    if trace is not None:
        nfe, order = torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts])
        torch.save({"trace": order, "nfe": nfe}, trace)
    return out


def _sample_range(
    cfg: DictConfig,
    run_dir: Path,
    checkpoint: Path,
    part: range,
    model: DiffusionLM | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ids, NFE and trace of the sequences ``part`` (global indices) of ``sample``'s job.

    Without ``model`` (a worker process) it loads the plugins and the checkpoint itself: workers
    get paths, never the model."""
    if model is None:
        load_plugins()
        model = load_model(run_dir, checkpoint)
    s = cfg.sample
    device = sample_device(s.device)
    model.to(device)
    sampler = SAMPLERS.build(s.sampler.name, sampler_params(cfg))
    tok = model.tokenizer
    autocast = getattr(torch, s.autocast) if s.autocast else None
    # A causal (AR) run reads its logits shifted, under causal attention: the objective says so.
    denoiser = network_denoiser(
        model.encoder, model.head, model.objective, tok.mask_id, tok.vocab_size, autocast
    )
    ids = sampler.sample(
        denoiser,
        len(part),
        tok.layout(s.bp).to(device),
        seed=s.seed,
        batch_size=s.batch_size,
        progress=progress,
        first_index=part.start,
    )
    assert sampler.last_run is not None
    return ids.cpu(), sampler.last_run.nfe.cpu(), sampler.last_run.trace.cpu()


def sample_device(spec: str) -> torch.device:
    """``sample.device``: ``auto`` is the first GPU when torch sees one, else the CPU."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise D3lmError(f"sample.device={spec!r}: expected auto, cpu, cuda or cuda:N") from None
    check_device("sample.device", spec, device.type)
    return device


def check_context(model: DiffusionLM, bp: int, run_dir: Path) -> None:
    """Refuse a length the backbone cannot hold, before any sequence is drawn. Past ``max_len``
    of the longest token the layout (tokens x vocabulary) is not built to count them: its size
    grows with ``bp``, and the answer is known."""
    max_len = model.backbone_config.max_len
    longest = int(model.tokenizer.token_lengths.max())
    beyond = bp > max_len * longest
    tokens = -(-bp // longest) if beyond else len(model.tokenizer.layout(bp))
    if tokens > max_len:
        raise D3lmError(
            f"{run_dir}: sample.bp={bp} needs {'at least ' * beyond}{tokens} tokens, more than "
            f"the model's context of {max_len} tokens"
        )


def sampler_params(cfg: DictConfig) -> dict[str, Any]:
    """The sampler's parameters; a sampler that takes a noise ``schedule`` (the ``ancestral``
    count reads it) gets the run's training schedule unless the user named one."""
    params = _plain(cfg.sample.sampler.params)
    factory = SAMPLERS.get(cfg.sample.sampler.name)
    if "schedule" not in params and "schedule" in inspect.signature(factory).parameters:
        params["schedule"] = _plain(cfg.diffusion.schedule)
    return params


def evaluate(cfg: DictConfig, run_dir: Path, samples: Path | None = None) -> pd.DataFrame:
    """Score a run's samples, a held-out real set and the baselines; write metrics.json and
    the run's rows in results/. Returns the tidy rows of every set."""
    e = cfg.evaluate
    table = data_table(cfg)
    reference = table.loc[table["split"] == e.split, "sequence"].tolist()
    train_seqs = table.loc[table["split"] == "train", "sequence"].tolist()
    options = EvaluateOptions.from_config(e, cfg.seed)
    rows = evaluate_samples(
        read_samples(samples or Path(run_dir) / "samples.fasta"),
        reference,
        train_seqs,
        build_extractors(options.features, Path(cfg.cache_dir)),
        options,
        MotifScanner() if e.motifs else None,
        run=GENERATED,
    )
    write_metrics(rows, Path(run_dir) / "metrics.json")
    generated = rows[rows["run"] == GENERATED]
    append_results(cfg, run_dir, dict(zip(generated["metric"], generated["value"], strict=True)))
    return rows


#: The columns the demo prints, in order.
DEMO_COLUMNS = [
    "gc_content",
    "cpg_oe",
    "js_k4",
    "js_k6",
    "fd_kmer",
    "fd_oracle",
    "motif_corr",
    "fraction_unique",
    "nearest_mean",
]


def demo_report(rows: pd.DataFrame) -> str:
    """The demo's table plus the learning check of the core issue: the generated set's 4-mer JS
    divergence is at most a third of uniform random DNA's, and its CpG o/e within 0.15 of real."""
    table = rows.pivot(index="run", columns="metric", values="value")
    table = table.loc[list(dict.fromkeys(rows["run"])), [c for c in DEMO_COLUMNS if c in table]]
    gen, real, uniform = (table.loc[name] for name in (GENERATED, "real", "uniform"))
    js_ok = gen["js_k4"] <= uniform["js_k4"] / 3
    cpg_ok = abs(gen["cpg_oe"] - real["cpg_oe"]) <= 0.15
    return "\n".join(
        [
            table.to_string(float_format=lambda v: f"{v:.4g}"),
            "",
            f"4-mer JS(generated) / JS(uniform) = {gen['js_k4'] / uniform['js_k4']:.3f} "
            f"(learned: <= 1/3) {'ok' if js_ok else 'NOT MET'}",
            f"|CpG o/e(generated) - CpG o/e(real)| = {abs(gen['cpg_oe'] - real['cpg_oe']):.3f} "
            f"(learned: <= 0.15) {'ok' if cpg_ok else 'NOT MET'}",
        ]
    )


def demo(cfg: DictConfig) -> str:
    """Train, sample and evaluate one run; return the printable report. Under DDP every
    process trains and process 0 alone samples, evaluates and writes the files."""
    run_dir = train(cfg)
    if rank_zero_only.rank != 0:
        return f"run: {run_dir}"
    sample(cfg, run_dir)
    return f"run: {run_dir}\n\n" + demo_report(evaluate(cfg, run_dir))


@functools.cache
def git_revision() -> str:
    """The checkout's revision, read once per process: a long job records the code it loaded,
    not a commit made while it ran."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def axes(cfg: DictConfig) -> dict[str, Any]:
    """The ablation axes of a run, as flat columns of its result rows."""
    return {
        "tokenizer": cfg.tokenizer.name,
        "tokenizer_params": json.dumps(_plain(cfg.tokenizer.params), sort_keys=True),
        "model": cfg.model.preset,
        "schedule": cfg.diffusion.schedule.name,
        "sampler": cfg.sample.sampler.name,
        "sampler_params": json.dumps(_plain(cfg.sample.sampler.params), sort_keys=True),
        "seed": cfg.seed,
    }


def append_results(cfg: DictConfig, run_dir: Path, metrics: dict[str, float]) -> Path:
    """Add one tidy row per metric to results/<experiment>.csv (rewritten atomically)."""
    path = Path(cfg.results_dir) / f"{cfg.experiment}.csv"
    rows = pd.DataFrame(
        [
            {"run": Path(run_dir).name, **axes(cfg), "metric": k, "value": v, "git": git_revision()}
            for k, v in metrics.items()
        ]
    )
    if path.exists():
        old = pd.read_csv(path)
        rows = pd.concat([old[old["run"] != Path(run_dir).name], rows], ignore_index=True)
    with atomic_path(path) as tmp:
        rows.to_csv(tmp, index=False)
    return path


def read_log(run_dir: Path) -> pd.DataFrame:
    """The training log of a run across all its sessions (first run and every resume)."""
    paths = sorted(
        Path(run_dir).glob("logs/version_*/metrics.csv"),
        key=lambda p: int(p.parent.name.split("_")[1]),
    )
    if not paths:
        raise FileNotFoundError(f"{run_dir}: no logs/version_*/metrics.csv")
    return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)


def read_samples(path: Path) -> list[str]:
    return [seq for _, seq in read_fasta(path)]


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
