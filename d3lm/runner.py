"""Config -> train -> sample -> evaluate -> result rows, one function per stage.

A run lives in ``runs/<experiment>/<run>/``: ``config.yaml`` (resolved), ``checkpoints/``,
``logs/metrics.csv``, ``samples.fasta``, ``metrics.json``. Every file is written atomically and
``resume=<run folder>`` continues training from ``checkpoints/last.ckpt``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from d3lm.data.datamodule import SequenceDataModule
from d3lm.data.fasta import read_fasta, write_fasta
from d3lm.data.tables import load_table
from d3lm.evaluate import EvaluateOptions, build_extractors, evaluate_samples, write_metrics
from d3lm.io import atomic_path, write_text
from d3lm.lit.diffusion_lm import DiffusionLM
from d3lm.metrics.motifs import MotifScanner
from d3lm.registry import SAMPLERS, TOKENIZERS
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


def last_checkpoint(run_dir: Path) -> Path:
    path = Path(run_dir) / "checkpoints" / "last.ckpt"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir}: no checkpoints/last.ckpt to resume or sample from")
    return path


def data_table(cfg: DictConfig) -> pd.DataFrame:
    d = cfg.data
    return load_table(d.dataset, Path(cfg.cache_dir), d.valid_fraction, d.test_fraction)


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
    )


def build_trainer(cfg: DictConfig, run_dir: Path) -> L.Trainer:
    t = cfg.trainer
    every = min(t.checkpoint_every_n_steps, t.max_steps)
    return L.Trainer(
        max_steps=t.max_steps,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        precision=t.precision,
        gradient_clip_val=t.gradient_clip_val,
        val_check_interval=min(t.val_check_interval, t.max_steps),
        check_val_every_n_epoch=None,
        limit_val_batches=t.limit_val_batches,
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
        ],
        plugins=[AtomicCheckpointIO()],
    )


def train(cfg: DictConfig) -> Path:
    """Train (or resume) a DiffusionLM; return the run folder."""
    run_dir = Path(cfg.resume) if cfg.resume else new_run_dir(cfg)
    ckpt = last_checkpoint(run_dir) if cfg.resume else None
    if ckpt is None and (run_dir / "checkpoints").exists():
        raise FileExistsError(f"{run_dir} holds a run already; resume it with resume={run_dir}")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg))
    table = data_table(cfg)
    model = DiffusionLM(
        tokenizer=fitted_tokenizer(cfg, table, ckpt),
        model=_plain(cfg.model),
        diffusion=_plain(cfg.diffusion),
        optim=_plain(cfg.optim),
        max_steps=cfg.trainer.max_steps,
        seed=cfg.seed,
    )
    datamodule = build_datamodule(cfg, model.tokenizer, table)
    if ckpt is None and cfg.model.init_output_bias:
        model.init_output_bias(datamodule.train_ids())
    trainer = build_trainer(cfg, run_dir)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt)
    trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    return run_dir


def fitted_tokenizer(cfg: DictConfig, table: pd.DataFrame, ckpt: Path | None) -> dict[str, Any]:
    """The tokenizer section the model is built with (and saves in its hyperparameters).

    A new run lets the plugin learn from the training split (``Tokenizer.fit``; fixed tokenisers
    learn nothing), cached under ``cache_dir/tokenizers`` by a hash of the plugin, its params
    and the split, so an ablation grid fits once; a resumed run keeps its checkpoint's, the ids
    its weights were trained on.
    """
    if ckpt is not None:
        saved = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
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
    model = DiffusionLM.load_from_checkpoint(
        checkpoint or last_checkpoint(run_dir), map_location="cpu"
    )
    return model.eval()


def sample(
    cfg: DictConfig, run_dir: Path, out: Path | None = None, trace: Path | None = None
) -> Path:
    """Generate ``cfg.sample.n`` sequences of exactly ``cfg.sample.bp`` bp into a FASTA file."""
    model = load_model(run_dir)
    tok = model.tokenizer
    s = cfg.sample
    sampler = SAMPLERS.build(s.sampler.name, _plain(s.sampler.params))
    autocast = getattr(torch, s.autocast) if s.autocast else None
    # A causal (AR) run reads its logits shifted, under causal attention: the objective says so.
    denoiser = network_denoiser(
        model.encoder, model.head, model.objective, tok.mask_id, tok.vocab_size, autocast
    )
    ids = sampler.sample(
        denoiser,
        s.n,
        tok.layout(s.bp),
        seed=s.seed,
        batch_size=s.batch_size,
        progress=s.progress,
    )
    sequences = [tok.decode(row) for row in ids]
    wrong = [i for i, seq in enumerate(sequences) if len(seq) != s.bp]
    if wrong:
        raise RuntimeError(
            f"sampler {s.sampler.name!r} returned {len(wrong)} sequences that are "
            f"not {s.bp} bp (first: index {wrong[0]})"
        )
    out = out or Path(run_dir) / "samples.fasta"
    write_fasta(
        out,
        ((f"{cfg.experiment}/{Path(run_dir).name}/{i}", seq) for i, seq in enumerate(sequences)),
    )
    if trace is not None:
        torch.save({"trace": sampler.last_run.trace, "nfe": sampler.last_run.nfe}, trace)
    return out


def evaluate(cfg: DictConfig, run_dir: Path, samples: Path | None = None) -> pd.DataFrame:
    """Score a run's samples, a held-out real set and the baselines; write metrics.json and
    the run's rows in results/. Returns the tidy rows of every set."""
    e = cfg.evaluate
    table = data_table(cfg)
    reference = table.loc[table["split"] == e.split, "sequence"].tolist()
    train_seqs = table.loc[table["split"] == "train", "sequence"].tolist()
    options = EvaluateOptions(
        features={name: dict(e.params.get(name, {})) for name in e.features},
        baselines={name: dict(e.params.get(name, {})) for name in e.baselines},
        split=e.split,
        motifs=e.motifs,
        seed=cfg.seed,
        progress=e.progress,
    )
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
    """Train, sample and evaluate one run; return the printable report."""
    run_dir = train(cfg)
    sample(cfg, run_dir)
    return f"run: {run_dir}\n\n" + demo_report(evaluate(cfg, run_dir))


def git_revision() -> str:
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
