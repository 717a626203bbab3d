"""The grid format every experiment shares: axes of settings, seeds, wildcards, shards.

An axis is a name and its values; a value is a scalar for the axis ``key``, ``"*"`` (every
registered plugin of the kind ``key`` names, so a user's plugin joins the grid unchanged), or
``{label: NAME, set: {dotted.key: value}}`` for settings that couple several keys (``kmer`` with
``k = 3``); the short form ``dotted.key: [values]`` uses the key as axis name. Sampler
parameters may be a symbol such as ``per_token`` (``stages.sample.SYMBOLS``), resolved from
the run's tokenizer when it samples. Seeds are a count (0..n-1) or a list. A :class:`Shard`
splits a grid's points among independent workers.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from d3lm.config import flatten
from d3lm.errors import D3lmError
from d3lm.registry import PLUGIN_KEYS, WILDCARD
from d3lm.specfiles import describe


@dataclass(frozen=True)
class Setting:
    """One value of an axis: its label (a table cell, a folder name part) and the keys it sets."""

    label: str
    overrides: Mapping[str, Any]


@dataclass(frozen=True)
class Axis:
    name: str
    settings: tuple[Setting, ...]


@dataclass(frozen=True)
class Point:
    """One setting of every axis of a kind (training or sampling)."""

    labels: Mapping[str, str]
    overrides: Mapping[str, Any]

    @property
    def name(self) -> str:
        return "_".join(f"{a}-{v}" for a, v in self.labels.items()) or "default"


def product(axes: Sequence[Axis]) -> list[Point]:
    points = []
    for combo in itertools.product(*(a.settings for a in axes)):
        overrides: dict[str, Any] = {}
        for setting in combo:
            overrides.update(setting.overrides)
        labels = {a.name: s.label for a, s in zip(axes, combo, strict=True)}
        points.append(Point(labels, overrides))
    return points


AXIS_KEYS = ("key", "values")

#: Seeds a run accepts (runner.RANGES["seed"]).
SEED_LIMIT = 2**32


def folder_name(where: str, key: str, value: Any) -> str | None:
    """``experiment`` and ``models`` name folders and results files."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or any(c in value for c in "/\\ \t"):
        raise D3lmError(f"{where}: {key}: expected a folder-name safe name, got {describe(value)}")
    return value


def parse_seeds(where: str, seeds: Any) -> list[int]:
    """A count (seeds 0..n-1) or a list of distinct seeds in [0, 2**32)."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise D3lmError(f"{where}: a count must be >= 1, got {seeds}")
        return list(range(seeds))
    if not isinstance(seeds, Sequence) or isinstance(seeds, str) or not seeds:
        raise D3lmError(f"{where}: expected a count or a list of seeds, got {describe(seeds)}")
    bad = [
        s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < SEED_LIMIT
    ]
    if bad:
        raise D3lmError(f"{where}: expected integers in [0, 2**32), got {bad}")
    if len(set(seeds)) != len(seeds):
        raise D3lmError(f"{where}: repeated seeds {list(seeds)}")
    return list(seeds)


def parse_axis(file: str, kind: str, name: str, spec: Any) -> Axis:
    where = f"{file}: {kind} axis {name!r}"
    if isinstance(spec, Mapping):
        unknown = sorted(str(k) for k in spec if k not in AXIS_KEYS)
        if unknown:
            raise D3lmError(f"{where}: unknown fields {unknown} (known: {list(AXIS_KEYS)})")
        key, values = spec.get("key"), spec.get("values")
        if key is not None and not isinstance(key, str):
            raise D3lmError(f"{where}: key: expected a dotted config key, got {describe(key)}")
    else:
        key, values = name, spec
    values = [values] if isinstance(values, str) else values
    if not isinstance(values, list) or not values:
        raise D3lmError(f"{where} needs a non-empty list of values, got {describe(values)}")
    settings: list[Setting] = []
    for value in values:
        if value == WILDCARD:
            if key not in PLUGIN_KEYS:
                raise D3lmError(
                    f"{where}: '*' needs a plugin key ({', '.join(PLUGIN_KEYS)}), got {key!r}"
                )
            listed = {s.label for s in settings} | {v for v in values if isinstance(v, str)}
            settings += [Setting(n, {key: n}) for n in PLUGIN_KEYS[key].names() if n not in listed]
        elif isinstance(value, Mapping):
            label, changes = value.get("label"), value.get("set")
            if set(value) != {"label", "set"} or not isinstance(changes, Mapping):
                raise D3lmError(f"{where}: {dict(value)} needs `label` and `set` (a mapping)")
            if isinstance(label, Mapping | list) or label is None:
                raise D3lmError(f"{where}: label: expected a name, got {describe(label)}")
            settings.append(Setting(str(label), flatten(changes)))
        elif key is None:
            raise D3lmError(f"{where} has scalar values but no `key`")
        else:
            settings.append(Setting(str(value), {key: value}))
    labels = [s.label for s in settings]
    bad = [label for label in labels if not label or any(c in label for c in "/\\ \t")]
    if bad:
        raise D3lmError(f"{where}: labels must be folder-name safe, got {bad}")
    if len(set(labels)) != len(labels):
        raise D3lmError(f"{where} repeats a label: {labels}")
    return Axis(name, tuple(settings))


@dataclass(frozen=True)
class Shard:
    """Training point ``i`` of every ``n`` (``--shard 0/4``): independent workers, e.g. the
    tasks of a SLURM array, split one grid without coordination; each trains and samples only
    its points and merges its rows into the shared results file."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            index, count = (int(x) for x in text.split("/"))
        except ValueError:
            raise D3lmError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None
        if count < 1 or not 0 <= index < count:
            raise D3lmError(f"--shard {text!r}: need N >= 1 and 0 <= I < N")
        return cls(index, count)

    def select(self, items: Sequence[Any]) -> list[tuple[int, Any]]:
        """``(position in the whole grid, item)`` of this shard's items."""
        return [(i, x) for i, x in enumerate(items) if i % self.count == self.index]
