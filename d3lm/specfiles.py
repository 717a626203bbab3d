"""Grid and search-space files read like the main config: every problem is a D3lmError that says
which file (``grid file PATH``, ``space file PATH``), which entry and why, before any value is
used, so a typo never surfaces as a traceback or after the first point has trained."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from d3lm.errors import D3lmError, NotFound


def read_mapping(path: Path, what: str, known: Collection[str]) -> dict[str, Any]:
    """The top-level mapping of the YAML file ``path`` (``what``: "grid file", "space file").
    An empty file is an empty mapping; unreadable text, a syntax error (with its line), a list
    or scalar at the top and a key outside ``known`` are errors naming the file."""
    where = f"{what} {path}"
    if not path.exists():
        raise NotFound(f"{where}: no such file")
    if path.is_dir():
        raise D3lmError(f"{where}: is a directory, not a YAML file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise D3lmError(f"{where}: not a text file (not UTF-8)") from None
    except yaml.YAMLError as err:
        raise D3lmError(f"{where}: not valid YAML: {yaml_reason(err)}") from None
    except OSError as err:
        raise D3lmError(f"{where}: unreadable: {err.strerror or err}") from None
    if raw is None:
        return {}
    expect_mapping(raw, where, f"a mapping of {sorted(known)}")
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        noun = what.split()[0]
        raise D3lmError(f"{where}: unknown {noun} keys {unknown} (known: {sorted(known)})")
    return dict(raw)


def yaml_reason(err: yaml.YAMLError) -> str:
    """One line for a YAML error: the problem and where it is (PyYAML spreads it over five)."""
    problem = getattr(err, "problem", None)
    mark = getattr(err, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def expect_mapping(value: Any, where: str, wanted: str = "a mapping") -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an error saying what ``where`` holds instead."""
    if not isinstance(value, Mapping):
        raise D3lmError(f"{where}: expected {wanted}, got {describe(value)}")
    return value


def describe(value: Any) -> str:
    """``a list [1, 2]``: the YAML type of a value, and the value, for error messages."""
    if value is None:
        return "nothing (null)"
    kinds = {list: "a list", dict: "a mapping", str: "a string", bool: "a boolean"}
    kind = next((k for t, k in kinds.items() if isinstance(value, t)), None)
    if kind is None:
        kind = "a number" if isinstance(value, int | float) else type(value).__name__
    text = repr(value)
    return f"{kind} {text if len(text) <= 60 else text[:57] + '...'}"


__all__ = ["describe", "expect_mapping", "read_mapping", "yaml_reason"]
