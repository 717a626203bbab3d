"""Sample a trained run: ``sample.n`` sequences of exactly ``sample.bp`` bp into a FASTA file."""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from omegaconf import DictConfig, OmegaConf

from d3lm import precision
from d3lm.config import plain
from d3lm.data.fasta import write_fasta
from d3lm.devices import check_device
from d3lm.errors import D3lmError
from d3lm.io import atomic_path, check_writable
from d3lm.lit.diffusion_lm import DiffusionLM
from d3lm.plugins import load_plugins
from d3lm.precision import AUTO, Autocast, check_autocast, sample_autocast
from d3lm.registry import SAMPLERS
from d3lm.rundir import RunDir, provenance_of
from d3lm.sampling import workers as sampling_workers
from d3lm.sampling.causal import network_denoiser
from d3lm.stages.checkpoints import load_model
from d3lm.stages.conditional import Condition, header
from d3lm.stages.ranges import SAMPLE_RANGES


def free_tokens(layout: torch.Tensor) -> int:
    """Positions a sampler draws (more than one legal token): one step per token."""
    return int((layout.sum(-1) > 1).sum())


#: Symbolic sampler-parameter values, resolved from the tokenizer layout of the bp sampled.
SYMBOLS: dict[str, Callable[[torch.Tensor], Any]] = {"per_token": free_tokens}


def resolve_symbols(cfg: DictConfig, tokenizer: Any) -> int:
    """Replace symbolic sampler parameters (``per_token``) in place, from the layout of the
    trained run's tokenizer (a learned one such as ``bpe`` exists only there); return the
    number of tokens sampled."""
    layout = tokenizer.layout(cfg.sample.bp)
    params = cfg.sample.sampler.params
    for key, value in list(params.items()):
        if isinstance(value, str) and value in SYMBOLS:
            params[key] = SYMBOLS[value](layout)
    return free_tokens(layout)


def sample(
    cfg: DictConfig, run_dir: Path, out: Path | None = None, trace: Path | None = None
) -> Path:
    """Generate ``cfg.sample.n`` sequences of exactly ``cfg.sample.bp`` bp into a FASTA file,
    with its provenance beside it (:func:`d3lm.rundir.provenance_of`, :func:`provenance`).

    ``sample.device`` (``auto``: the GPU when there is one) runs the network, under
    ``sample.autocast`` (``auto``: bf16 where this device multiplies it natively, as
    ``trainer.precision: auto`` decides). On the CPU, ``sample.workers`` processes (``auto``: one
    per core, at most one per batch) sample contiguous runs of whole batches, each loading the
    checkpoint itself; the output is the same for any count. A GPU is driven by one process.
    """
    s = cfg.sample
    for key, (ok, wanted) in SAMPLE_RANGES.items():
        if not ok(OmegaConf.select(cfg, key)):
            raise D3lmError(f"{key}={OmegaConf.select(cfg, key)!r}: must be {wanted}")
    check_autocast(s.autocast)
    batches = -(-s.n // s.batch_size)
    workers = min(sampling_workers.resolve(s.workers, "sample.workers", batches), s.n)
    device = sample_device(s.device)
    if device.type != "cpu":
        workers = 1
    run = RunDir(run_dir)
    out = Path(out or run.samples)
    check_writable(out, keep_folders=False)  # before the work, not after it
    autocast = sample_autocast(s.autocast, device.type, OmegaConf.select(cfg, "cache_dir"))
    if s.autocast == AUTO:
        rank_zero_info(autocast.line())
    checkpoint = run.last_checkpoint()  # one file for every worker, even if training goes on
    model = load_model(run.path, checkpoint)
    check_context(model, s.bp, run.path)
    condition = Condition.of(model, s.labels, s.guidance, s.n, str(run.path))
    cfg = cfg.copy()
    resolve_symbols(cfg, model.tokenizer)  # e.g. steps=per_token, from this run's tokenizer
    # workers load the checkpoint; the dtype is resolved here, once
    job = functools.partial(_sample_range, cfg, run.path, checkpoint, autocast.dtype)
    if workers == 1:  # in this process: the model loaded above, and its progress bar
        job = functools.partial(job, model=model, progress=s.progress)
    start = time.perf_counter()
    parts = sampling_workers.run(job, s.n, workers, s.batch_size)
    wall_s = time.perf_counter() - start
    ids, nfe = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    tok = model.tokenizer
    sequences = [tok.decode(row) for row in ids]
    wrong = [i for i, seq in enumerate(sequences) if len(seq) != s.bp]
    if wrong:
        raise RuntimeError(
            f"sampler {s.sampler.name!r} returned {len(wrong)} sequences that are "
            f"not {s.bp} bp (first: index {wrong[0]})"
        )
    records = (
        (header(f"{cfg.experiment}/{run.name}/{i}", label), seq)
        for i, (seq, label) in enumerate(zip(sequences, condition.labels, strict=True))
    )
    used = {"device": str(device), "workers": len(parts), "wall_s": round(wall_s, 4)}
    # both files or neither: the FASTA is renamed into place only once its sidecar is written
    with atomic_path(provenance_of(out)) as sidecar, atomic_path(out) as fasta:
        write_fasta(fasta, records)
        info = provenance(cfg, run, autocast, used, nfe, fasta, condition)
        sidecar.write_text(json.dumps(info, indent=1, default=str) + "\n", encoding="utf-8")
    if trace is not None:
        torch.save({"trace": torch.cat([p[2] for p in parts]), "nfe": nfe}, trace)
    return out


def provenance(
    cfg: DictConfig,
    run: RunDir,
    autocast: Autocast,
    used: dict[str, Any],
    nfe: torch.Tensor,
    fasta: Path,
    condition: Condition,
) -> dict[str, Any]:
    """What a cost-quality comparison needs of one samples file: how it was drawn (sampler and
    its resolved parameters, n, bp, seed, the autocast dtype and why, the labels sampled and
    the guidance weight), where and at what cost
    (``used``: device, worker processes, wall seconds of the sampling; mean network evaluations
    per sequence) and on what (torch, the CPU and its native-bf16 flags, the GPU); ``fasta``'s
    sha256 ties the sidecar to its file."""
    s = cfg.sample
    flags = precision.bf16_flags()
    device = torch.device(used["device"])
    return {
        "fasta_sha256": hashlib.sha256(fasta.read_bytes()).hexdigest(),
        "run": str(run.path),
        "sampler": {"name": s.sampler.name, "params": sampler_settings(cfg)},
        **{key: s[key] for key in ("n", "bp", "seed", "batch_size")},
        "autocast": {
            "requested": s.autocast,
            "dtype": autocast.name,
            "reason": autocast.reason,
        },
        **condition.provenance(),
        **used,
        "nfe_mean": float(nfe.double().mean()),
        "machine": {
            "torch": torch.__version__,
            "cpu": precision.cpu_model(),
            "cpu_flags": {flag: flag in flags for flag in precision.BF16_FLAGS},
            "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        },
    }


def _sample_range(
    cfg: DictConfig,
    run_dir: Path,
    checkpoint: Path,
    autocast: torch.dtype | None,
    part: range,
    model: DiffusionLM | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ids, NFE and trace of the sequences ``part`` (global indices) of ``sample``'s job, the
    network under ``autocast`` (None: fp32, no autocast). A guided call counts two evaluations
    (the conditional and the null pass).

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
    # A causal (AR) run reads its logits shifted, under causal attention: the objective says so.
    denoiser = network_denoiser(
        model.encoder, model.head, model.objective, tok.mask_id, tok.vocab_size, autocast
    )
    # labels are a function of (labels, n): every worker rebuilds the same from the config
    condition = Condition.of(model, s.labels, s.guidance, s.n, str(run_dir))
    ids, known, layout = condition.prompt(part, tok.layout(s.bp).to(device), tok.mask_id)
    ids = sampler.infill(
        condition.denoiser(denoiser),
        ids,
        known,
        layout,
        seed=s.seed,
        batch_size=s.batch_size,
        progress=progress,
        first_index=part.start,
    )
    assert sampler.last_run is not None
    ids = condition.strip(ids, tok.cls_id)
    nfe = sampler.last_run.nfe * condition.passes  # sequences through the network, as timed
    return ids.cpu(), nfe.cpu(), sampler.last_run.trace.cpu()


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
    params = plain(cfg.sample.sampler.params)
    factory = SAMPLERS.get(cfg.sample.sampler.name)
    if "schedule" not in params and "schedule" in inspect.signature(factory).parameters:
        params["schedule"] = plain(cfg.diffusion.schedule)
    return params


def sampler_settings(cfg: DictConfig) -> dict[str, Any]:
    """Every parameter the sampler is built with: :func:`sampler_params` (symbols resolved),
    then its preset's axes and its defaults, so a provenance says ``steps=50`` even where the
    config left the preset to say it."""
    params = sampler_params(cfg)
    bound = inspect.signature(SAMPLERS.get(cfg.sample.sampler.name)).bind_partial(**params)
    bound.apply_defaults()
    return dict(bound.arguments)
