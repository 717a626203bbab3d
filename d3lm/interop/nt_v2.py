"""Nucleotide Transformer v2 weights in and out: a local HuggingFace checkpoint folder <-> a suite
checkpoint, by one name table, with no ``transformers`` and no remote code.

A HuggingFace NT v2 folder holds ``config.json``, ``model.safetensors`` or ``pytorch_model.bin``
(``EsmForMaskedLM`` names: ``esm.*`` and ``lm_head.*``) and ``vocab.txt``. :func:`import_nt`
checks that the config describes what the backbone computes (rotary, bias-free SwiGLU, no
embedding LayerNorm, no token dropout, untied head, NT v2's 4,107-token vocabulary in its order),
renames the tensors and returns a checkpoint that ``runner.load_model`` and ``d3lm sample`` read;
:func:`export_nt` writes the reverse.

Tensors NT v2's code builds but its masked-LM forward never reads (the learned position table,
unused with rotary; ESM's contact head; an old ``position_ids`` buffer) are not model parameters
here. Import keeps them, with the original ``config.json``, in the checkpoint's ``nt_v2`` entry,
outside the state dict (so the model still loads strictly), and export writes them back unchanged:
import then export gives every tensor back bit for bit, in its dtype. A checkpoint the suite
trained has no such entry, and its export carries no such tensors (NT v2's code initialises what
it misses; rotary attention never reads it).
"""

from __future__ import annotations

import functools
import json
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import OmegaConf
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from d3lm.config import load_config
from d3lm.errors import D3lmError, NotFound
from d3lm.interop.conditions import fresh_condition_table, without_condition_table
from d3lm.io import atomic_path, write_text
from d3lm.model.backbone import PRESETS, BackboneConfig, Embeddings, NTv2Encoder
from d3lm.model.heads import LMHead
from d3lm.registry import BACKBONES, OBJECTIVES, TOKENIZERS
from d3lm.rundir import RunDir
from d3lm.tokenizers.kmer import NT6merTokenizer

_WB = ("weight", "bias")
_W = ("weight",)

#: The whole name mapping: (our module, HF NT v2's module, its tensors); ``{i}`` is a layer index.
NAME_TABLE: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("encoder.embeddings.word_embeddings", "esm.embeddings.word_embeddings", _W),
    ("encoder.layers.{i}.attention_norm", "esm.encoder.layer.{i}.attention.LayerNorm", _WB),
    ("encoder.layers.{i}.attention.query", "esm.encoder.layer.{i}.attention.self.query", _WB),
    ("encoder.layers.{i}.attention.key", "esm.encoder.layer.{i}.attention.self.key", _WB),
    ("encoder.layers.{i}.attention.value", "esm.encoder.layer.{i}.attention.self.value", _WB),
    ("encoder.layers.{i}.attention.output", "esm.encoder.layer.{i}.attention.output.dense", _WB),
    ("encoder.layers.{i}.ffn_norm", "esm.encoder.layer.{i}.LayerNorm", _WB),
    ("encoder.layers.{i}.ffn.gate_up", "esm.encoder.layer.{i}.intermediate.dense", _W),
    ("encoder.layers.{i}.ffn.down", "esm.encoder.layer.{i}.output.dense", _W),
    ("encoder.final_norm", "esm.encoder.emb_layer_norm_after", _WB),
    ("head.dense", "lm_head.dense", _WB),
    ("head.layer_norm", "lm_head.layer_norm", _WB),
    ("head.decoder", "lm_head.decoder", _W),
    ("head", "lm_head", ("bias",)),
)

#: Tensors an NT v2 checkpoint may hold that its masked-LM forward never reads: carried, not used.
CARRIED = (
    "esm.embeddings.position_embeddings.weight",
    "esm.embeddings.position_ids",
    "esm.contact_head.regression.weight",
    "esm.contact_head.regression.bias",
)

#: config.json values the backbone computes, and the HF default assumed where a key is absent.
SUPPORTED: dict[str, tuple[Any, Any]] = {
    "model_type": ("esm", None),
    "position_embedding_type": ("rotary", "absolute"),
    "add_bias_fnn": (False, True),
    "emb_layer_norm_before": (False, None),
    "token_dropout": (False, False),
    "tie_word_embeddings": (False, True),
    "is_folding_model": (False, False),
    "hidden_dropout_prob": (0.0, 0.1),
    "attention_probs_dropout_prob": (0.0, 0.1),
}

#: config.json keys that give the backbone's shape, and its field they set.
SHAPE_KEYS = {
    "num_hidden_layers": "n_layers",
    "hidden_size": "hidden",
    "num_attention_heads": "heads",
    "intermediate_size": "ffn",
}

#: The checkpoint entry holding the original config.json and the carried tensors.
NT_KEY = "nt_v2"
WEIGHT_FILES = {"safetensors": "model.safetensors", "bin": "pytorch_model.bin"}


def name_pairs(n_layers: int) -> list[tuple[str, str]]:
    """(our name, HF name) of every mapped tensor of an ``n_layers`` model, in table order."""
    pairs = []
    for ours, hf, tensors in NAME_TABLE:
        for i in range(n_layers) if "{i}" in ours else [None]:
            pairs += [(f"{ours}.{t}".format(i=i), f"{hf}.{t}".format(i=i)) for t in tensors]
    return pairs


@functools.cache
def _vocabulary() -> NT6merTokenizer:
    return NT6merTokenizer()


# -- import ---------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise NotFound(f"{path}: no such file (an NT v2 folder holds config.json)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise D3lmError(f"{path}: not valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise D3lmError(f"{path}: expected a JSON object of config keys")
    return config


def model_section(config: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The ``model`` hyperparameters (preset and every field) of the backbone an NT v2
    ``config.json`` describes; anything it cannot compute is refused, naming the key, so an
    import never silently changes the network."""
    tok = _vocabulary()
    wanted = {**SUPPORTED, "vocab_size": (tok.vocab_size, None)}
    wanted |= {"pad_token_id": (tok.pad_id, None), "mask_token_id": (tok.mask_id, None)}
    for key, (value, default) in wanted.items():
        got = config.get(key, default)
        if got != value and not (value is False and got is None):
            shown = f"{got!r}" if key in config else f"absent (HF default {got!r})"
            raise D3lmError(f"{path}: {key} is {shown}; the NT v2 backbone needs {value!r}")
    fields: dict[str, Any] = {}
    for key in [*SHAPE_KEYS, "max_position_embeddings", "layer_norm_eps"]:
        got = config.get(key)
        types = (int, float) if key == "layer_norm_eps" else (int,)
        if isinstance(got, bool) or not isinstance(got, types) or got <= 0:
            raise D3lmError(f"{path}: {key} is {got!r}; expected a positive number")
        fields[SHAPE_KEYS.get(key, key)] = got
    # ESM numbers positions from pad_token_id + 1, so max_position_embeddings counts those too.
    fields["max_len"] = fields.pop("max_position_embeddings") - tok.pad_id - 1
    fields["layer_norm_eps"] = float(fields["layer_norm_eps"])
    if fields["max_len"] < 1:
        raise D3lmError(f"{path}: max_position_embeddings leaves no room for a token")
    params = {
        **fields,
        "rotary_base": 10000.0,
        "tie_embeddings": False,
        "nucleotide_embeddings": False,
    }
    section = {"preset": _preset(params), "params": params, "init_output_bias": False}
    try:
        BACKBONES.build(section["preset"], params)
    except ValueError as err:
        raise D3lmError(f"{path}: {err}") from None
    return section


def _preset(params: Mapping[str, Any]) -> str:
    """The NT v2 preset of this shape, or the 50M one as the base that ``params`` override."""
    for name in ("nt-v2-50m", "nt-v2-100m"):
        base = PRESETS[name]
        if all(getattr(base, f) == params[f] for f in SHAPE_KEYS.values()):
            return name
    return "nt-v2-50m"


def check_vocab(path: Path) -> None:
    """``vocab.txt`` must list NT v2's tokens in nt6mer's order, one per line."""
    if not path.is_file():
        raise NotFound(f"{path}: no such file (an NT v2 folder holds vocab.txt)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise D3lmError(f"{path}: not a text file: {err}") from None
    expected = _vocabulary().vocab
    for number, (got, want) in enumerate(zip(lines, expected, strict=False), start=1):
        if got.strip() != want:
            raise D3lmError(
                f"{path}: line {number} is {got!r}; nt6mer (NT v2's order) has {want!r}"
            )
    if len(lines) != len(expected):
        raise D3lmError(f"{path}: {len(lines)} tokens; NT v2's vocabulary has {len(expected)}")


def read_weights(directory: Path) -> tuple[dict[str, Tensor], Path]:
    """The tensors of ``model.safetensors`` (preferred) or ``pytorch_model.bin``, by HF name."""
    for name in WEIGHT_FILES.values():
        path = directory / name
        if path.is_file():
            break
    else:
        raise NotFound(f"{directory}: no {' or '.join(WEIGHT_FILES.values())}")
    try:
        if path.suffix == ".safetensors":
            tensors = load_file(path)
        else:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, pickle.UnpicklingError, RuntimeError, OSError, EOFError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise D3lmError(f"{path}: unreadable weights: {reason}") from None
    if not isinstance(tensors, dict) or not all(isinstance(t, Tensor) for t in tensors.values()):
        raise D3lmError(f"{path}: expected a flat mapping of tensor names to tensors")
    return tensors, path


def _expected_shapes(cfg: BackboneConfig) -> dict[str, tuple[int, ...]]:
    """Our parameter names and shapes for ``cfg``, from the modules themselves (meta device)."""
    codes = _vocabulary().nucleotide_codes().to("meta") if cfg.nucleotide_embeddings else None
    with torch.device("meta"):
        encoder = NTv2Encoder(cfg, codes)
        head = LMHead(cfg, encoder.embeddings)
    shapes = {f"encoder.{n}": tuple(p.shape) for n, p in encoder.named_parameters()}
    return shapes | {f"head.{n}": tuple(p.shape) for n, p in head.named_parameters()}


def _carried_shapes(cfg: BackboneConfig, config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    positions = int(config["max_position_embeddings"])
    shapes = [(positions, cfg.hidden), (1, positions), (1, cfg.n_layers * cfg.heads), (1,)]
    return dict(zip(CARRIED, shapes, strict=True))


def _check_tensors(
    tensors: Mapping[str, Tensor], shapes: Mapping[str, tuple[int, ...]], path: Path, what: str
) -> None:
    """Every name in ``shapes`` present with that shape and a float dtype, and no other name;
    ``what`` names where the shapes come from."""
    missing = [name for name in shapes if name not in tensors]
    unexpected = [name for name in tensors if name not in shapes]
    if missing or unexpected:
        parts = [f"{len(missing)} missing (first: {missing[0]})"] if missing else []
        parts += [f"{len(unexpected)} unexpected (first: {unexpected[0]})"] if unexpected else []
        raise D3lmError(f"{path}: tensors do not fit {what}: {', '.join(parts)}")
    for name, want in shapes.items():
        tensor = tensors[name]
        if tuple(tensor.shape) != want:
            raise D3lmError(f"{path}: {name} has shape {tuple(tensor.shape)}; {what} needs {want}")
        if not tensor.is_floating_point() and name != "esm.embeddings.position_ids":
            raise D3lmError(f"{path}: {name} has dtype {tensor.dtype}; expected floating point")


def import_nt(
    directory: str | os.PathLike[str], conditioning: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A suite checkpoint (state dict under our names, hyperparameters, global step 0) from a
    local HuggingFace NT v2 folder; tensors keep their dtype.

    The model's hyperparameters come from ``config.json`` (nt6mer tokens, NT v2's network with
    the suite's embedding options off); the diffusion, optimiser and step settings are
    ``experiments/base.yaml``'s defaults, for training on from these weights. ``conditioning``
    (a section with its classes; default none) adds a fresh condition table for NT v2's network.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise NotFound(f"{directory}: no such folder (expected an NT v2 checkpoint folder)")
    config_path = directory / "config.json"
    config = _read_json(config_path)
    model = model_section(config, config_path)
    cfg = BACKBONES.build(model["preset"], model["params"])
    check_vocab(directory / "vocab.txt")
    tensors, path = read_weights(directory)
    pairs = name_pairs(cfg.n_layers)
    ours = _expected_shapes(cfg)
    carried = _carried_shapes(cfg, config)
    shapes = {hf: ours[name] for name, hf in pairs}
    present = {name: shape for name, shape in carried.items() if name in tensors}
    _check_tensors(tensors, shapes | present, path, str(config_path))
    defaults = load_config()
    conditioning = dict(conditioning or OmegaConf.to_container(defaults.conditioning))
    state = {name: tensors[hf] for name, hf in pairs}
    return {
        "state_dict": state | fresh_condition_table(conditioning, cfg.vocab_size, state),
        "hyper_parameters": {
            "conditioning": conditioning,
            "tokenizer": {"name": "nt6mer", "params": {}},
            "model": model,
            "diffusion": OmegaConf.to_container(defaults.diffusion, resolve=True),
            "optim": OmegaConf.to_container(defaults.optim, resolve=True),
            "max_steps": defaults.trainer.max_steps,
            "seed": defaults.seed,
        },
        "global_step": 0,
        "epoch": 0,
        "pytorch-lightning_version": L.__version__,
        NT_KEY: {"config": config, "carried": {name: tensors[name] for name in present}},
    }


def write_run(checkpoint: Mapping[str, Any], run_dir: str | os.PathLike[str]) -> Path:
    """An ordinary run folder for an imported checkpoint: ``checkpoints/last.ckpt`` and a
    ``config.yaml`` (base defaults with the checkpoint's model), so ``d3lm sample`` reads it."""
    run = RunDir(run_dir)
    if run.last.exists() or run.config.exists():
        raise D3lmError(f"{run} holds a run already; choose a new folder")
    hparams = checkpoint["hyper_parameters"]
    config = OmegaConf.merge(
        load_config(),
        {key: value for key, value in hparams.items() if key != "max_steps"},  # config sections
        {"trainer": {"max_steps": hparams["max_steps"]}, "run": run.name},
    )
    with atomic_path(run.last) as tmp:
        torch.save(dict(checkpoint), tmp)
    write_text(run.config, OmegaConf.to_yaml(config))
    return run.path


# -- export ---------------------------------------------------------------------------------------


def _export_config(
    hparams: Mapping[str, Any], source: str | os.PathLike[str]
) -> tuple[BackboneConfig, NT6merTokenizer]:
    """The backbone of a checkpoint, refused (naming ``source``) if NT v2 cannot hold it."""
    tok_spec, model = hparams["tokenizer"], hparams["model"]
    tokenizer = TOKENIZERS.build(tok_spec["name"], tok_spec.get("params"))
    nt = _vocabulary()
    if tokenizer.vocab != nt.vocab:
        raise D3lmError(
            f"{source}: tokenizer {tok_spec['name']!r} has another vocabulary than NT v2's "
            "(nt6mer); NT v2 weights need nt6mer's token ids"
        )
    config = BACKBONES.build(model["preset"], model.get("params"), vocab_size=nt.vocab_size)
    if config.rotary_base != 10000.0:
        raise D3lmError(f"{source}: rotary_base {config.rotary_base}; NT v2 uses 10000")
    objective = hparams["diffusion"]["objective"]["name"]
    if getattr(OBJECTIVES.get(objective), "causal", False):
        raise D3lmError(
            f"{source}: objective {objective!r} trains causal attention; NT v2 is bidirectional"
        )
    return config, nt


def export_nt(
    checkpoint: Mapping[str, Any],
    directory: str | os.PathLike[str],
    format: str = "safetensors",
    source: str | os.PathLike[str] = "checkpoint",
) -> Path:
    """Write a suite checkpoint as a HuggingFace NT v2 folder: ``config.json``, ``vocab.txt`` and
    ``model.safetensors`` (``format="bin"``: ``pytorch_model.bin``); ``source`` names the
    checkpoint in errors.

    Tied and per-nucleotide embeddings (the ``tiny``/``small`` options) fold into NT v2's untied
    tables exactly: the input table becomes the sum the model looks up, and the decoder a copy
    of it. The folder must not hold NT v2 files already (an export never overwrites weights).
    """
    if format not in WEIGHT_FILES:
        raise D3lmError(f"format {format!r}: expected one of {', '.join(WEIGHT_FILES)}")
    directory = Path(directory)
    targets = [directory / name for name in ("config.json", "vocab.txt", *WEIGHT_FILES.values())]
    existing = [str(p) for p in targets if p.exists()]
    if existing:
        raise D3lmError(f"{existing[0]} exists; export into a folder without NT v2 files")
    cfg, tok = _export_config(checkpoint["hyper_parameters"], source)
    state = without_condition_table(checkpoint["state_dict"], source, tok.cls_id)
    _check_tensors(state, _expected_shapes(cfg), Path(source), "its hyperparameters")
    if cfg.nucleotide_embeddings:
        embeddings = Embeddings(cfg, tok.nucleotide_codes())
        prefix = "encoder.embeddings."
        embeddings.load_state_dict(
            {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        )
        with torch.no_grad():
            state[f"{prefix}word_embeddings.weight"] = embeddings.weight().contiguous()
    if cfg.tie_embeddings:
        state["head.decoder.weight"] = state["encoder.embeddings.word_embeddings.weight"].clone()
    tensors = {hf: state[name].contiguous() for name, hf in name_pairs(cfg.n_layers)}
    saved = checkpoint.get(NT_KEY) or {}
    tensors |= dict(saved.get("carried", {}))
    dtype = str(tensors["lm_head.bias"].dtype).removeprefix("torch.")
    fresh = {key: value for key, (value, _) in SUPPORTED.items()}
    fresh |= {"architectures": ["EsmForMaskedLM"], "hidden_act": "gelu", "torch_dtype": dtype}
    shape = {key: getattr(cfg, field) for key, field in SHAPE_KEYS.items()}
    shape |= {
        "vocab_size": tok.vocab_size,
        "pad_token_id": tok.pad_id,
        "mask_token_id": tok.mask_id,
        "max_position_embeddings": cfg.max_len + tok.pad_id + 1,
        "layer_norm_eps": cfg.layer_norm_eps,
    }
    config = {**fresh, **saved.get("config", {}), **shape}
    with atomic_path(directory / WEIGHT_FILES[format]) as tmp:  # the costly file first
        if format == "safetensors":
            save_file(tensors, tmp, metadata={"format": "pt"})
        else:
            torch.save(tensors, tmp)
    write_text(directory / "vocab.txt", "\n".join(tok.vocab) + "\n")
    write_text(directory / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
    return directory
