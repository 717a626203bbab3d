"""The table the ``d3lm`` command is built from: a row per command, shared arguments.

A row is the command's name (``"data prepare"`` for a command under a group), its help, its
arguments and a function of the parsed arguments that returns what to print (``d3lm.cli``
turns the rows into the parser). The functions call the stages; they import them inside, so
``d3lm plugins`` or a typo answers without loading the training stack.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from d3lm.params import SEED, Range, integer_at_least

CACHE_DIR = ".cache/d3lm"


@dataclass(frozen=True)
class Arg:
    """One ``add_argument`` call."""

    flags: tuple[str, ...]
    options: dict[str, Any]


def arg(*flags: str, **options: Any) -> Arg:
    return Arg(flags, options)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Callable[[argparse.Namespace], Any]
    args: Sequence[Arg] = ()
    group_help: str = field(default="", compare=False)  #: help of the group a command opens


# -- argument types and shared arguments ----------------------------------------------------------


def _integer(wanted: Range) -> Callable[[str], int]:
    """argparse type: an integer in range ``wanted`` (argparse names the option in its error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not wanted.ok(value):
            raise argparse.ArgumentTypeError(f"{value} is not {wanted.wanted}")
        return value

    return parse


POSITIVE = _integer(integer_at_least(1))
COUNT = _integer(integer_at_least(0))
SEED_ARG = _integer(SEED)

SCALE = arg("--scale", help="experiments/scales/<SCALE>.yaml on top of base.yaml")
CACHE = arg("--cache-dir", default=CACHE_DIR)
CONFIGURED = (
    SCALE,
    arg("--config", action="append", default=[], metavar="FILE", help="more YAML layers, in order"),
    arg("overrides", nargs="*", metavar="key=value"),
)


def grid_args(points: str) -> tuple[Arg, ...]:
    """The options every grid command shares: scale, seeds, dry run and sharding."""
    return (
        SCALE,
        arg("--seeds", type=POSITIVE, help="seeds 0..N-1 instead of the grid's"),
        arg("--dry-run", action="store_true", help="print the points, done or missing"),
        arg(
            "--shard",
            default="0/1",
            metavar="I/N",
            help=f"only {points} I, I+N, I+2N, ... (parallel workers, e.g. a SLURM array)",
        ),
    )
