"""Declared types and ranges of parameters, checked before anything is built or written.

A plugin (dataset recipe, task, sampler axis, classifier head ...) declares what a parameter
accepts in its annotation: ``n: PositiveInt = 6000``, ``width: PositiveInt | None = None``.
``Registry.check`` compares every value a config or command line gives with that annotation
before the constructor runs, so a zero count, a fractional length or a word where a number
belongs is one line naming the parameter, its value and what it accepts, instead of an empty
cached dataset or a comparison error deep inside the plugin. Only numbers and booleans are
checked; other annotations (paths, mappings, plugins) stay the plugin's own business.

Config values are checked by the same :class:`Range` values: :data:`CONFIG_RANGES` holds one rule
per key name, and :func:`d3lm.config.config_ranges` applies it to every key of that name a config
file declares (``runner.RANGES``, ``finetune.RANGES``), so a seed, a step count or a learning
rate means the same thing everywhere.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import numbers
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, NamedTuple


class Range(NamedTuple):
    """A test of a number and how it reads in a message (``>= 1``)."""

    ok: Callable[[Any], bool]
    wanted: str


def at_least(low: float) -> Range:
    return Range(lambda v: v >= low, f">= {low}")


def above(low: float) -> Range:
    return Range(lambda v: v > low, f"> {low}")


def integer_at_least(low: int) -> Range:
    """For config keys whose default is null, so the config's own type check cannot see them."""
    return Range(
        lambda v: _is_int(v) and v >= low,
        "a positive integer" if low == 1 else f"an integer >= {low}",
    )


#: What numpy's and Lightning's seeding both accept (an integer, also where a table checks a
#: value that the config's type check let through as null).
SEED = Range(lambda v: _is_int(v) and 0 <= v < 2**32, "an integer in [0, 2**32)")

PositiveInt = Annotated[int, at_least(1)]
NonNegativeInt = Annotated[int, at_least(0)]
Seed = Annotated[int, SEED]
PositiveFloat = Annotated[float, above(0)]
NonNegativeFloat = Annotated[float, at_least(0)]
#: A probability that may be 0 but never 1 (dropout: 1 would drop every feature).
Probability = Annotated[float, Range(lambda v: 0 <= v < 1, "in [0, 1)")]
UNIT = Range(lambda v: 0 <= v <= 1, "in [0, 1]")
UnitInterval = Annotated[float, UNIT]

#: What a config key of each name accepts (its last dotted part): values the trainer would not
#: check, or would accept and then train nothing (``max_steps=0`` saves an untouched model,
#: ``lr=0`` never moves it). Keys whose default is null take :func:`integer_at_least`, since the
#: config's own type check cannot see their type.
CONFIG_RANGES: dict[str, Range] = {
    "seed": SEED,
    "num_classes": integer_at_least(2),
    "max_steps": at_least(1),
    "max_epochs": integer_at_least(1),
    "num_nodes": at_least(1),
    "val_check_interval": at_least(1),
    "checkpoint_every_n_steps": at_least(1),
    "log_every_n_steps": at_least(1),
    "limit_val_batches": at_least(0),
    "gradient_clip_val": at_least(0),
    "patience": at_least(1),
    "lr": above(0),
    "lr_head": above(0),
    "lr_body": above(0),
    "weight_decay": at_least(0),
    "warmup_steps": at_least(0),
    "min_lr_ratio": UNIT,
    "batch_size": at_least(1),
    "eval_batch_size": at_least(1),
    "num_workers": at_least(0),
}


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


#: Annotation type -> (how a message names it, test); other annotations are not checked.
SCALARS: dict[type, tuple[str, Callable[[Any], bool]]] = {
    bool: ("true or false", lambda v: isinstance(v, bool)),
    int: ("an integer", _is_int),
    float: ("a number", _is_number),
}


class Declared(NamedTuple):
    """The checkable part of an annotation: scalar types, whether None is allowed, ranges."""

    types: tuple[type, ...]
    optional: bool
    ranges: tuple[Range, ...]

    def problem(self, value: Any) -> str | None:
        """Why ``value`` does not fit, or None."""
        if value is None and self.optional:
            return None
        if not any(SCALARS[t][1](value) for t in self.types):
            names = [SCALARS[t][0] for t in self.types] + ["null"] * self.optional
            return f"expected {' or '.join(names)}"
        wrong = [r.wanted for r in self.ranges if not r.ok(value)]
        return f"must be {' and '.join(wrong)}" if wrong else None


def declared(hint: Any) -> Declared | None:
    """``hint`` as scalar types with their ranges (``Annotated`` metadata), optionally None;
    None when any member is something else (a path, a mapping, ``Any``)."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kinds, ranges, optional = [], [], False
    for member in typing.get_args(hint) if union else (hint,):
        if member is type(None):
            optional = True
            continue
        if typing.get_origin(member) is Annotated:
            member, *meta = typing.get_args(member)
            ranges += [m for m in meta if isinstance(m, Range)]
        if member not in SCALARS:
            return None
        kinds.append(member)
    return Declared(tuple(kinds), optional, tuple(ranges)) if kinds else None


def hints(factory: Callable[..., Any]) -> dict[str, Any]:
    """Parameter -> resolved annotation of a plugin factory (a class, a function, or a
    ``functools.partial`` of either); empty when they cannot be resolved (a third-party plugin
    annotating with names it imports only for type checkers), so such a plugin is unchecked."""
    while isinstance(factory, functools.partial):
        factory = factory.func
    plain_class = inspect.isclass(factory) and not dataclasses.is_dataclass(factory)
    target = factory.__init__ if plain_class else factory  # type: ignore[misc]
    try:
        return typing.get_type_hints(target, include_extras=True)
    except (NameError, TypeError, AttributeError):
        return {}


def check_values(factory: Callable[..., Any], params: Mapping[str, Any]) -> str | None:
    """``key=value: reason`` for the first parameter whose value its annotation refuses."""
    annotations = hints(factory)
    for key, value in params.items():
        wanted = declared(annotations.get(key))
        why = wanted.problem(value) if wanted is not None else None
        if why is not None:
            return f"{key}={value!r}: {why}"
    return None


__all__ = [
    "CONFIG_RANGES",
    "SEED",
    "UNIT",
    "NonNegativeFloat",
    "NonNegativeInt",
    "PositiveFloat",
    "PositiveInt",
    "Probability",
    "Range",
    "Seed",
    "UnitInterval",
    "above",
    "at_least",
    "check_values",
    "declared",
    "hints",
    "integer_at_least",
]
