"""OmegaConf layering: experiments/base.yaml <- scale <- extra files <- key=value overrides.

base.yaml declares every key, so the merge runs in struct mode: a misspelt key in a file or an
override is an error naming the key, not a silent no-op. Plugin ``params`` mappings are open,
because each plugin validates its own parameters when it is built.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError

EXPERIMENTS_DIR = Path(
    os.environ.get("D3LM_EXPERIMENTS", Path(__file__).parents[1] / "experiments")
)


class ConfigError(ValueError):
    """A config names a key that base.yaml does not declare."""


def _open_params(node: DictConfig) -> None:
    """Allow new keys under every ``params`` mapping (plugins check their own arguments)."""
    for key in list(node.keys()):
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            if key == "params":
                OmegaConf.set_struct(child, False)
            else:
                _open_params(child)


def scale_path(scale: str) -> Path:
    path = EXPERIMENTS_DIR / "scales" / f"{scale}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (EXPERIMENTS_DIR / "scales").glob("*.yaml"))
        raise FileNotFoundError(f"unknown scale {scale!r}; known scales: {', '.join(known)}")
    return path


def load_config(
    scale: str | None = None,
    files: Sequence[str | Path] = (),
    overrides: Sequence[str] = (),
) -> DictConfig:
    """Merge base, scale, files and ``key=value`` overrides into one resolved config."""
    config = OmegaConf.load(EXPERIMENTS_DIR / "base.yaml")
    OmegaConf.set_struct(config, True)
    _open_params(config)
    layers: list[tuple[str, DictConfig]] = []
    if scale:
        layers.append((str(scale_path(scale)), OmegaConf.load(scale_path(scale))))
    layers += [(str(f), OmegaConf.load(f)) for f in files]
    layers.append(("command-line overrides", OmegaConf.from_dotlist(list(overrides))))
    for source, layer in layers:
        try:
            config = OmegaConf.merge(config, layer)
        except ConfigKeyError as err:
            raise ConfigError(
                f"{source}: {err.msg.splitlines()[0]} (not declared in base.yaml)"
            ) from None
    OmegaConf.resolve(config)
    return config


def load_run_config(run_dir: Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The saved config of a run, with ``key=value`` overrides (e.g. a longer max_steps)."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir}: not a run folder (no config.yaml)")
    return load_config(files=[path], overrides=overrides)
