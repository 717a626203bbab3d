"""Atomic file writes: a crash or a full disk never leaves a half-written result behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
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


def check_writable(path: str | os.PathLike[str], *, keep_folders: bool = True) -> None:
    """Fail now, naming ``path``, if a file cannot be written there later (a folder in its
    place, a parent that is a file, no permission), so no long job runs only to lose its output.
    Creates the missing parent folders, as the atomic write would; ``keep_folders=False``
    removes them again, so a command that fails later leaves nothing behind (the write that
    succeeds creates them)."""
    target = Path(path)
    if target.is_dir():
        raise D3lmError(f"{target}: is a directory; give a file path")
    missing = [p for p in target.parents if not p.exists()]  # deepest first
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=target.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise D3lmError(f"{target}: cannot write here: {err.strerror or err}") from None
    finally:
        for folder in [] if keep_folders else missing:
            with contextlib.suppress(OSError):
                folder.rmdir()


def check_not_inputs(
    outputs: Mapping[str, str | os.PathLike[str] | None],
    inputs: Mapping[str, str | os.PathLike[str] | None],
) -> None:
    """Refuse, before any work, an output that is one of the inputs or another output (the
    same path, another spelling of it, a symlink or a hard link to it): a result must never
    replace what it was computed from. Keys name the paths in the message (``--out``)."""
    named = [(k, v) for k, v in outputs.items() if v is not None]
    # an input that is not a file or folder (a dataset name) cannot be replaced
    given = [(k, v) for k, v in inputs.items() if v is not None and os.path.exists(v)]
    for i, (name, out) in enumerate(named):
        for other, path in [*given, *named[:i]]:
            if _same_file(out, path):
                raise D3lmError(
                    f"{name} {out}: is also {other} {path}; an output never replaces an "
                    "input, give another path"
                )


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist yet: where it would be written (symlinks, "..")
        return Path(a).resolve() == Path(b).resolve()


def folder_problem(path: str | os.PathLike[str]) -> str | None:
    """Why files cannot be written into the folder ``path`` (made if missing) later: ``X is a
    file`` (in its place or above it) or the system's reason (no permission); None if they can.
    Creates nothing: the nearest existing folder on the way is probed with a temp folder."""
    target = Path(path)
    try:
        existing = next(p for p in [target, *target.parents] if p.exists())
    except OSError as err:  # a folder on the way that cannot even be looked into
        return err.strerror or str(err)
    if not existing.is_dir():
        return f"{existing} is a file"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".d3lm-probe-", dir=existing))
    except OSError as err:
        return err.strerror or str(err)
    return None


def check_folder(path: str | os.PathLike[str]) -> None:
    """Fail now, naming ``path``, if it is not a folder that files can be written into later
    (see :func:`folder_problem`), so no work runs only to lose its output."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise D3lmError(f"{target}: a file, not a folder; give a folder path")
    problem = folder_problem(target)
    if problem is not None:
        raise D3lmError(f"{target}: cannot write here: {problem}")


def splice(path: str | os.PathLike[str], marker: str, text: str) -> None:
    """Replace the lines between ``<!-- MARKER -->`` and ``<!-- /MARKER -->`` in ``path`` with
    ``text`` (the markers stay; atomic), so a generator rewrites only its own part of a page
    (``make bench`` its figures in BENCHMARKS.md, ``make figures`` the README's claims)."""
    path = Path(path)
    begin, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    doc = path.read_text(encoding="utf-8")
    if begin not in doc or end not in doc:
        raise D3lmError(f"{path}: no {begin} ... {end} markers to write between")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    write_text(path, f"{head}{begin}\n{text.strip()}\n{end}{tail}")
