"""Loads every plugin: the built-in packages and third-party ones declared as entry points.

The built-in packages are the registries' homes (:class:`d3lm.registry.Registry`), so a new kind
is loaded where it is declared. A third-party package adds a tokenizer, schedule or sampler by
registering it at import time and declaring
``[project.entry-points."d3lm.plugins"] my_name = "my_package.module"``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from omegaconf import DictConfig, OmegaConf

from d3lm.registry import (
    BACKBONES,
    CONDITIONINGS,
    OBJECTIVES,
    REGISTRIES,
    SAMPLERS,
    SCHEDULES,
    TOKENIZERS,
)
from d3lm.tokenizers.base import Tokenizer

#: The entry-point group of third-party plugin modules.
ENTRY_POINTS = "d3lm.plugins"


def builtin_packages() -> list[str]:
    """Every registry's ``home``: the packages whose import registers the built-in plugins."""
    return list(dict.fromkeys(r.home for r in REGISTRIES.values() if r.home is not None))


def load_plugins() -> None:
    for module in builtin_packages():
        importlib.import_module(module)
    for entry in entry_points(group=ENTRY_POINTS):
        entry.load()


def catalogue() -> dict[str, dict[str, str]]:
    """Kind -> {name: one-line description} of every registered plugin."""
    load_plugins()
    return {kind: registry.describe() for kind, registry in REGISTRIES.items()}


def _params(node: Any) -> dict[str, Any]:
    return OmegaConf.to_container(node, resolve=True) if node else {}  # type: ignore[return-value]


def check_config(cfg: DictConfig) -> None:
    """Build every plugin a config names (cheap: no network, no data), so an unknown name, a
    parameter a plugin does not take or a value it refuses fails before a run folder exists or
    a long job starts, naming the plugin. The objective is only checked for its parameter names:
    it is built around a schedule and the tokenizer's mask id; so are a tokenizer and the
    conditioning, which are fitted to the training data first."""
    load_plugins()
    tokenizer = TOKENIZERS.get(cfg.tokenizer.name)
    if getattr(tokenizer.fit, "__func__", None) is Tokenizer.fit.__func__:
        TOKENIZERS.build(cfg.tokenizer.name, _params(cfg.tokenizer.params))
    else:  # one that learns from the data (bpe) is only whole once fitted: check its names
        TOKENIZERS.check(cfg.tokenizer.name, _params(cfg.tokenizer.params))
    BACKBONES.build(cfg.model.preset, _params(cfg.model.params))
    SCHEDULES.build(cfg.diffusion.schedule.name, _params(cfg.diffusion.schedule.params))
    OBJECTIVES.check(cfg.diffusion.objective.name, _params(cfg.diffusion.objective.params))
    CONDITIONINGS.check(cfg.conditioning.name, _params(cfg.conditioning.params))
    SAMPLERS.build(cfg.sample.sampler.name, _params(cfg.sample.sampler.params))
