"""Atomic file writes: a crash or a full disk never leaves a half-written result behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from d3lm.errors import D3lmError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it over ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide shared caches from other users
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_with(path: str | os.PathLike[str], writer: Callable[[IO[str]], None]) -> None:
    """Atomically write a text file produced by ``writer(handle)``."""
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        writer(handle)


def check_writable(path: str | os.PathLike[str]) -> None:
    """Fail now, naming ``path``, if a file cannot be written there later (a folder in its
    place, a parent that is a file, no permission), so no long job runs only to lose its output.
    Creates the missing parent folders, as the atomic write would."""
    target = Path(path)
    if target.is_dir():
        raise D3lmError(f"{target}: is a directory; give a file path")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=target.parent)
    except OSError as err:
        raise D3lmError(f"{target}: cannot write here: {err.strerror or err}") from None
    os.close(fd)
    os.unlink(probe)
