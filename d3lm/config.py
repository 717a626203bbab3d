"""OmegaConf layering: experiments/base.yaml <- scale <- extra files <- key=value overrides.

base.yaml declares every key, so the merge runs in struct mode: a misspelt key in a file or an
override is an error naming the key, not a silent no-op. Plugin ``params`` mappings are open,
because each plugin validates its own parameters when it is built.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from d3lm.errors import D3lmError, NotFound
from d3lm.params import CONFIG_RANGES, Range
from d3lm.rundir import RunDir

EXPERIMENTS_DIR = Path(
    os.environ.get("D3LM_EXPERIMENTS", Path(__file__).parents[1] / "experiments")
)
#: Declares every key of a run (``d3lm train``).
BASE_YAML = EXPERIMENTS_DIR / "base.yaml"


class ConfigError(D3lmError):
    """A config names a key that base.yaml does not declare, or a value of the wrong type."""


def _open_params(node: DictConfig) -> None:
    """Allow new keys under every ``params`` / ``*_params`` mapping (plugins and tasks check
    their own arguments)."""
    for key in list(node.keys()):
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            if key == "params" or str(key).endswith("_params"):
                OmegaConf.set_struct(child, False)
            else:
                _open_params(child)


#: Every key of a fine-tuning run, with its default.
FINETUNE_YAML = EXPERIMENTS_DIR / "finetune.yaml"


def scale_path(scale: str) -> Path:
    path = EXPERIMENTS_DIR / "scales" / f"{scale}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (EXPERIMENTS_DIR / "scales").glob("*.yaml"))
        raise NotFound(f"unknown scale {scale!r}; known scales: {', '.join(known)}")
    return path


def load_config(
    scale: str | None = None,
    files: Sequence[str | Path] = (),
    overrides: Sequence[str] = (),
    base_file: str | Path | None = None,
    overrides_source: str = "command-line overrides",
) -> DictConfig:
    """Merge base, scale, files and ``key=value`` overrides into one resolved config.

    ``base_file`` declares every key (default ``experiments/base.yaml``; fine-tuning runs are
    declared by ``experiments/finetune.yaml``). ``overrides_source`` names the overrides in
    errors, so a grid or space file entry checked on its own is reported as itself, not as the
    command line."""
    base_path = Path(base_file or BASE_YAML)
    base = OmegaConf.load(base_path)
    config = base.copy()
    OmegaConf.set_struct(config, True)
    _open_params(config)
    layers: list[tuple[str, DictConfig]] = []
    if scale:
        layers.append((str(scale_path(scale)), OmegaConf.load(scale_path(scale))))
    layers += [(str(f), _load_file(Path(f))) for f in files]
    layers.append((overrides_source, _from_dotlist(overrides, overrides_source)))
    for source, layer in layers:
        try:
            config = OmegaConf.merge(config, layer)
        except ConfigKeyError as err:
            raise ConfigError(
                f"{source}: {err.msg.splitlines()[0]} (not declared in {base_path.name})"
            ) from None
        _check_types(base, config, source)
    try:
        OmegaConf.resolve(config)
    except OmegaConfBaseException as err:
        raise ConfigError(f"config: {err.msg.splitlines()[0]}") from None
    return config


def _load_file(path: Path) -> DictConfig:
    """A YAML config layer; a missing, unreadable or non-mapping file is an error naming it."""
    if not path.is_file():
        raise NotFound(f"{path}: no such config file")
    try:
        layer = OmegaConf.load(path)
    except (yaml.YAMLError, OmegaConfBaseException, UnicodeDecodeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{path}: not a valid YAML config: {reason}") from None
    if not isinstance(layer, DictConfig):
        raise ConfigError(f"{path}: a config file must hold a mapping of keys, not a list")
    return layer


def _from_dotlist(overrides: Sequence[str], source: str) -> DictConfig:
    for item in overrides:
        if "=" not in item or not item.split("=", 1)[0]:
            raise ConfigError(f"{item!r}: an override must be key=value")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except (yaml.YAMLError, OmegaConfBaseException) as err:
        raise ConfigError(f"{source}: {str(err).splitlines()[0]}") from None


#: base.yaml's type of a key -> the value types an override may have (strings take anything).
_ACCEPTS: dict[type, tuple[type, ...]] = {bool: (bool,), int: (int,), float: (int, float)}
_NAMES = {bool: "true or false", int: "an integer", float: "a number"}


def _check_types(base: DictConfig, config: DictConfig, source: str, prefix: str = "") -> None:
    """A key that base.yaml declares as a number or boolean must stay one: ``max_steps=abc``
    fails here, naming the layer and the key, not deep inside the trainer."""
    for key in base:
        default, value = base._get_node(key), config._get_node(key)
        path = f"{prefix}{key}"
        if isinstance(default, DictConfig):
            if key != "params" and isinstance(value, DictConfig):
                _check_types(default, value, source, f"{path}.")
            continue
        if value is None or default._is_interpolation() or value._is_interpolation():
            continue
        want, got = type(default._value()), value._value()
        if want not in _ACCEPTS or got is None:
            continue
        if (isinstance(got, bool) and want is not bool) or not isinstance(got, _ACCEPTS[want]):
            raise ConfigError(f"{source}: {path}: expected {_NAMES[want]}, got {got!r}")


def load_run_config(
    run_dir: Path, overrides: Sequence[str] = (), overrides_source: str = "command-line overrides"
) -> DictConfig:
    """The saved config of a run, with ``key=value`` overrides (e.g. a longer max_steps);
    ``overrides_source`` names the overrides in errors (see :func:`load_config`)."""
    path = RunDir(run_dir).config
    if not path.exists():
        raise NotFound(f"{run_dir}: not a run folder (no config.yaml)")
    return load_config(files=[path], overrides=overrides, overrides_source=overrides_source)


def completed(saved: DictConfig, section: str | None = None) -> DictConfig:
    """A config saved by an earlier version (a run's ``config.yaml``, or its ``section``, e.g. a
    ``sample.yaml``) with the keys added to base.yaml since, at their defaults: a key is added
    with the default that keeps what runs did before it existed, so an old run compares equal
    to the same settings asked for now."""
    base = _load_file(BASE_YAML)
    if section is not None:
        base = OmegaConf.select(base, section)
    merged = OmegaConf.merge(base, saved)
    assert isinstance(merged, DictConfig)
    return merged


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}, the dotted keys of grid and sweep files; an empty mapping
    stays a value."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def config_ranges(base_file: Path, skip: Sequence[str] = ()) -> dict[str, Range]:
    """Dotted key -> its :data:`d3lm.params.CONFIG_RANGES` rule, for every key that ``base_file``
    declares and whose last part has a rule, outside the sections in ``skip``."""
    keys = flatten(OmegaConf.to_container(OmegaConf.load(base_file)))  # type: ignore[arg-type]
    return {
        key: CONFIG_RANGES[key.rsplit(".", 1)[-1]]
        for key in keys
        if key.rsplit(".", 1)[-1] in CONFIG_RANGES and key.split(".", 1)[0] not in skip
    }


def dotlist(overrides: Mapping[str, Any]) -> list[str]:
    """{"a.b": [1, 2]} -> ["a.b=[1, 2]"]: values as JSON, so OmegaConf reads back their type."""
    return [f"{k}={json.dumps(v)}" for k, v in overrides.items()]


def plain(node: Any) -> Any:
    """A config node as plain containers (resolved); anything else as it is."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
