"""What a run would refuse, checked on composed configs before any work starts.

A grid composes every point and a sweep every extreme of its search ranges and checks them here,
with the same value ranges and plugin builds that ``train`` and ``sample`` apply, so that a bad
value fails at once (and at ``--dry-run``), not after the first point has trained or trial by
trial. Layers of overrides are first checked one at a time, so that an error names the grid or
space file entry that holds the bad key or value rather than "command-line overrides".
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from omegaconf import DictConfig

from d3lm.config import dotlist
from d3lm.errors import D3lmError
from d3lm.plugins import check_config
from d3lm.precision import check_autocast
from d3lm.stages.ranges import RANGES, SAMPLE_RANGES, check_ranges

#: ``compose(overrides, source)``: the config the overrides give, errors naming ``source``.
Compose = Callable[[list[str], str], DictConfig]
Ranges = dict[str, tuple[Callable[[float], bool], str]]
#: What ``train`` and ``sample`` refuse.
ALL_RANGES: Ranges = {**RANGES, **SAMPLE_RANGES}


def check_run_config(cfg: DictConfig, symbols: Collection[str] = ()) -> None:
    """Value ranges, ``sample.autocast`` and every plugin built
    (:func:`d3lm.plugins.check_config`). A sampler parameter given as one of ``symbols``
    (``per_token``: known only once the run's tokenizer is) is checked as a step count of 1."""
    check_ranges(cfg, ALL_RANGES)
    check_autocast(cfg.sample.autocast)
    params = cfg.sample.sampler.params
    symbolic = [k for k, v in params.items() if isinstance(v, str) and v in symbols]
    if symbolic:
        cfg = copy.deepcopy(cfg)  # the caller's config keeps its symbols
        for key in symbolic:
            cfg.sample.sampler.params[key] = 1
    check_config(cfg)


def check_layers(compose: Compose, layers: Iterable[tuple[str, Sequence[str]]]) -> None:
    """Each named layer of ``key=value`` overrides alone on the base: its keys, their types and
    the value ranges of the keys it sets, with the layer's name in the error."""
    for source, overrides in layers:
        cfg = compose(list(overrides), source)
        keys = [o.split("=", 1)[0] for o in overrides]
        try:
            check_ranges(cfg, _ranges_of(keys))
        except D3lmError as err:
            raise D3lmError(f"{source}: {err}") from None


def named(source: str, overrides: Mapping[str, Any]) -> tuple[str, list[str]]:
    """A layer for :func:`check_layers` from dotted overrides (a grid or space file entry)."""
    return source, dotlist(overrides)


def _ranges_of(keys: Sequence[str]) -> Ranges:
    """The ranges of the keys set (a key, or a section above it)."""
    return {
        key: rule
        for key, rule in ALL_RANGES.items()
        if any(key == k or key.startswith(f"{k}.") for k in keys)
    }


__all__ = ["ALL_RANGES", "check_layers", "check_run_config", "named"]
