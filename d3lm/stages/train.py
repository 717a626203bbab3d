"""Train (or continue) a DiffusionLM: config -> run folder with checkpoints and logs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from omegaconf import DictConfig, OmegaConf

from d3lm import interrupt, runlock
from d3lm.conditioning import Conditioning
from d3lm.config import completed, flatten, plain
from d3lm.data.datamodule import SequenceDataModule
from d3lm.data.tables import load_table
from d3lm.errors import D3lmError
from d3lm.io import write_text
from d3lm.lit.diffusion_lm import DiffusionLM, NonFinite
from d3lm.precision import AUTO
from d3lm.registry import CONDITIONINGS, TOKENIZERS
from d3lm.rundir import RunDir
from d3lm.stages.callbacks import stopped_at
from d3lm.stages.checkpoints import load_weights, read_checkpoint
from d3lm.stages.ranges import check_ranges
from d3lm.stages.trainer import build_trainer


class RunExists(D3lmError, FileExistsError):
    """A new run was given the folder of a run that has a checkpoint."""


def data_table(cfg: DictConfig) -> pd.DataFrame:
    d = cfg.data
    params = OmegaConf.to_container(d.params, resolve=True)
    assert isinstance(params, dict)
    return load_table(d.dataset, Path(cfg.cache_dir), d.valid_fraction, d.test_fraction, params)


def data_source(cfg: DictConfig) -> str:
    """How error messages name the training data."""
    return f"data.dataset={cfg.data.dataset}"


def build_datamodule(
    cfg: DictConfig,
    tokenizer: Any,
    table: pd.DataFrame | None = None,
    conditioning: Conditioning | None = None,
) -> SequenceDataModule:
    """``conditioning``: the model's plugin, which puts each record's label into its ids."""
    return SequenceDataModule(
        data_table(cfg) if table is None else table,
        tokenizer,
        batch_size=cfg.data.batch_size,
        eval_batch_size=cfg.data.eval_batch_size,
        num_workers=cfg.data.num_workers,
        seed=cfg.seed,
        limit_val_batches=cfg.trainer.limit_val_batches,
        source=data_source(cfg),
        conditioning=conditioning,
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
    run = RunDir(cfg.resume) if cfg.resume else RunDir.of(cfg)
    with runlock.hold(run.path):
        try:
            return _train(cfg, run, callbacks)
        except interrupt.Interrupted as err:
            stopped_at(err, run)
            raise


def _train(cfg: DictConfig, run: RunDir, callbacks: Sequence[L.Callback]) -> Path:
    last = run.last
    if not cfg.resume and last.exists():
        cfg = continue_run(cfg, run)
    saved = read_checkpoint(run.last_checkpoint(), resume=True) if cfg.resume else None
    if saved is not None and saved["global_step"] >= cfg.trainer.max_steps:
        raise D3lmError(
            f"{last}: trained {saved['global_step']} steps already; "
            f"trainer.max_steps={cfg.trainer.max_steps} asks for no more"
        )
    t = cfg.trainer
    trainer = build_trainer(
        cfg,
        run,
        max_steps=t.max_steps,
        val_check_interval=min(t.val_check_interval, t.max_steps),
        checkpoints=[
            ModelCheckpoint(
                dirpath=run.checkpoints,
                every_n_train_steps=min(t.checkpoint_every_n_steps, t.max_steps),
                save_top_k=0,
                save_last=True,
            )
        ],
        callbacks=callbacks,
        limit_val_batches=None if t.limit_val_batches else 0,  # the datamodule applies it
    )
    if trainer.world_size > 1 and not cfg.run and not cfg.resume:
        raise D3lmError(
            f"{trainer.world_size} processes need run=NAME, so that all write to one run folder"
        )
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    table = data_table(cfg)
    conditioning = fitted_conditioning(cfg, table, saved)
    model = build_model(cfg, fitted_tokenizer(cfg, table, saved), conditioning)
    datamodule = build_datamodule(cfg, model.tokenizer, table, model.conditioning)
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
        run.discard()  # what a run killed before its first checkpoint left
    try:
        resume = last if saved is not None else None
        with interrupt.deferred():
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume, weights_only=True)
            trainer.save_checkpoint(last, weights_only=False)  # the whole state, not weights only
    except BaseException as err:
        kept = last.exists()
        if new and not kept:
            run.discard()
        if isinstance(err, NonFinite):
            where = (
                f"the last checkpoint is kept ({last}, step {read_checkpoint(last)['global_step']})"
                if kept
                else "no checkpoint had been written, so the run folder is removed"
            )
            raise D3lmError(f"{run}: {err}; {where}") from None
        raise
    return run.path


#: Keys that say where a run lives, not what it trains: ``run`` is null in the config of a run
#: named by its start time, which a continuing command names.
FOLDER_KEYS = {"resume", "run", "runs_dir", "experiment"}


def continue_run(cfg: DictConfig, run: RunDir) -> DictConfig:
    """``cfg`` resuming ``run_dir``, an unfinished run whose ``config.yaml`` holds the same
    settings (``trainer.precision: auto`` matches what it chose): the same command run again
    continues the run. A finished run, or one of other settings, is refused (``RunExists``)."""
    hint = f"resume it with resume={run}"
    saved = run.saved_config()
    if saved is None:
        raise RunExists(f"{run} holds a run already; {hint}")
    before, now = flatten(plain(completed(saved))), flatten(plain(cfg))
    if now.get("trainer.precision") == AUTO:
        now["trainer.precision"] = before.get("trainer.precision")
    keys = (before.keys() | now.keys()) - FOLDER_KEYS
    differ = sorted(k for k in keys if before.get(k) != now.get(k))
    if differ:
        key = differ[0]
        raise RunExists(
            f"{run} holds a run with other settings ({key}={before.get(key)!r} there, "
            f"{now.get(key)!r} now); {hint}, or choose another run=NAME"
        )
    step = read_checkpoint(run.last_checkpoint())["global_step"]
    if step >= cfg.trainer.max_steps:
        raise RunExists(f"{run} holds a run already ({step} steps trained); {hint}")
    rank_zero_info(f"{run}: continuing it from step {step} (the settings it was started with)")
    resumed = cfg.copy()
    resumed.resume = str(run)
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


def build_model(
    cfg: DictConfig,
    tokenizer: dict[str, Any] | None = None,
    conditioning: dict[str, Any] | None = None,
) -> DiffusionLM:
    """The untrained module a config describes; ``tokenizer`` and ``conditioning``: the fitted
    sections (default: the config's, for plugins that learn nothing)."""
    return DiffusionLM(
        tokenizer=tokenizer or plain(cfg.tokenizer),
        model=plain(cfg.model),
        diffusion=plain(cfg.diffusion),
        optim=plain(cfg.optim),
        max_steps=cfg.trainer.max_steps,
        seed=cfg.seed,
        conditioning=conditioning or plain(cfg.conditioning),
    )


def fitted_conditioning(
    cfg: DictConfig, table: pd.DataFrame, saved: dict[str, Any] | None
) -> dict[str, Any]:
    """The conditioning section the model is built with (and saves in its hyperparameters):
    a new run's plugin fitted to the table (``label``: the training split's classes), a resumed
    run's from its checkpoint (``none`` for one written before conditioning existed)."""
    if saved is not None:
        return saved["hyper_parameters"].get("conditioning") or {"name": "none", "params": {}}
    spec = plain(cfg.conditioning)
    fit = CONDITIONINGS.get(spec["name"]).fit
    return {**spec, "params": fit(table, spec.get("params") or {}, data_source(cfg))}


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
    spec = plain(cfg.tokenizer)
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


def train_status(cfg: DictConfig, run: RunDir) -> str:
    """``missing``, ``partial (k/n)`` or ``done``: how far a grid point's run has trained."""
    step = run.trained_steps()
    if step is None:
        return "missing"
    return "done" if step >= cfg.trainer.max_steps else f"partial ({step}/{cfg.trainer.max_steps})"


def train_point(cfg: DictConfig, run: RunDir) -> None:
    """Train a grid point, resuming from its last checkpoint; a run that never checkpointed
    restarts from scratch (``train`` discards its aborted logs, so the log is one clean
    session). The folder is locked first, so a second worker given the point is refused
    instead of deleting the logs of the one training it."""
    with runlock.hold(run.path):
        if run.trained_steps() is not None:
            cfg.resume = str(run)
        train(cfg)
