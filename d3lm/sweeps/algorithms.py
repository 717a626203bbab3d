"""Optuna's samplers and pruners by the names a search-space file uses, read from Optuna itself:
every concrete class it exports, so a new Optuna release adds its own without an edit here."""

from __future__ import annotations

import inspect
import re
from typing import Any

import optuna


def optuna_classes(module: Any, base: type, suffix: str) -> dict[str, type]:
    """Every concrete ``base`` that ``module`` exports, by its name in snake_case without
    ``suffix``: ``SuccessiveHalvingPruner`` -> ``successive_halving``, ``TPESampler`` -> ``tpe``."""
    found = {}
    for name in module.__all__:
        cls = getattr(module, name)
        if isinstance(cls, type) and issubclass(cls, base) and not inspect.isabstract(cls):
            short = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.removesuffix(suffix)).lower()
            found[short] = cls
    return found


SAMPLERS = optuna_classes(optuna.samplers, optuna.samplers.BaseSampler, "Sampler")
#: Several workers propose at once: TPE's constant liar keeps them off each other's points.
SAMPLER_DEFAULTS: dict[str, dict[str, Any]] = {"tpe": {"constant_liar": True}}

#: ``none`` is a space file's word for Optuna's NopPruner.
PRUNERS = {
    ("none" if name == "nop" else name): cls
    for name, cls in optuna_classes(optuna.pruners, optuna.pruners.BasePruner, "Pruner").items()
}
