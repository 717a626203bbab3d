"""Loads every plugin: the built-in packages and third-party ones declared as entry points.

A third-party package adds a tokenizer, schedule or sampler by registering it at import time and
declaring ``[project.entry-points."d3lm.plugins"] my_name = "my_package.module"``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from d3lm.registry import REGISTRIES

BUILTIN = (
    "d3lm.tokenizers",
    "d3lm.model",
    "d3lm.diffusion",
    "d3lm.sampling",
    "d3lm.data",
    "d3lm.metrics",
    "d3lm.baselines",
)


def load_plugins() -> None:
    for module in BUILTIN:
        importlib.import_module(module)
    for entry in entry_points(group="d3lm.plugins"):
        entry.load()


def catalogue() -> dict[str, dict[str, str]]:
    """Kind -> {name: one-line description} of every registered plugin."""
    load_plugins()
    return {kind: registry.describe() for kind, registry in REGISTRIES.items()}
