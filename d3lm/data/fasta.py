"""FASTA reading and writing (plain or gzip), with errors that name the file and record."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from d3lm.errors import D3lmError, NotFound
from d3lm.io import write_with


def _open(path: Path) -> IO[str]:
    if path.is_dir():
        raise D3lmError(f"{path}: is a directory, not a FASTA file")
    if not path.exists():
        raise NotFound(f"{path}: no such FASTA file")
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt") if gzipped else open(path)


#: What a damaged file raises while it is read: truncated gzip, bytes that are not text.
_DAMAGED = (EOFError, gzip.BadGzipFile, zlib.error, UnicodeDecodeError)


def read_fasta(path: str | os.PathLike[str]) -> Iterator[tuple[str, str]]:
    """Yield ``(name, sequence)`` records; sequence lines are joined and upper-cased.

    The name is the header up to the first whitespace. Text before the first header is an error
    (it usually means the file is not FASTA at all).
    """
    for name, _, seq in read_fasta_described(path):
        yield name, seq


def read_fasta_described(path: str | os.PathLike[str]) -> Iterator[tuple[str, str, str]]:
    """Like ``read_fasta``, with the header text after the name (labelled FASTA keeps
    ``label=X split=Y`` there)."""
    path = Path(path)
    try:
        yield from _records(path)
    except _DAMAGED as err:
        raise D3lmError(f"{path}: unreadable (truncated or not a text FASTA file): {err}") from None


def _records(path: Path) -> Iterator[tuple[str, str, str]]:
    name: str | None = None
    description = ""
    chunks: list[str] = []
    with _open(path) as handle:
        for lineno, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            if line.startswith(">"):
                if name is not None:
                    yield name, description, "".join(chunks).upper()
                fields = line[1:].split(maxsplit=1)
                if not fields:
                    raise D3lmError(f"{path}: line {lineno}: FASTA header without a name")
                name, description, chunks = fields[0], "".join(fields[1:]), []
            elif name is None:
                raise D3lmError(f"{path}: line {lineno}: sequence data before the first '>' header")
            else:
                chunks.append(line)
    if name is not None:
        yield name, description, "".join(chunks).upper()


def write_fasta(
    path: str | os.PathLike[str], records: Iterable[tuple[str, str]], width: int = 80
) -> None:
    """Atomically write ``(name, sequence)`` records, wrapping lines at ``width``."""

    def write(handle: IO[str]) -> None:
        for name, seq in records:
            handle.write(f">{name}\n")
            for start in range(0, len(seq), width):
                handle.write(seq[start : start + width] + "\n")

    write_with(path, write)
