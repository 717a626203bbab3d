"""Storage files checked like the suite's other inputs, before Optuna opens them.

Optuna would add its tables to any SQLite database and append its records to any file, so a
storage path that holds something else (a text file, a folder, another program's database), or
where nothing can be written, is a D3lmError naming the file and the reason, and the file is
left exactly as it was. Nothing here creates or changes a file or folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from pathlib import Path

from d3lm.errors import D3lmError, NotFound
from d3lm.io import folder_problem

SQLITE_HEADER = b"SQLite format 3\x00"
#: Tables every Optuna RDB storage has (optuna.storages._rdb.models).
OPTUNA_TABLES = frozenset({"studies", "trials", "version_info"})
#: How Optuna's journal backend starts every record (compact JSON, op_code first).
RECORD_START = b'{"op_code":'


def check_sqlite(path: Path, where: str, must_exist: bool) -> None:
    """An SQLite file Optuna may use: absent (created on a writable path), empty, or a database
    with Optuna's tables; ``must_exist``: a study is read from it, so it must hold them."""
    if not _check_target(path, where, must_exist):
        return
    with path.open("rb") as handle:
        head = handle.read(len(SQLITE_HEADER))
    if head and head != SQLITE_HEADER:
        raise D3lmError(f"{where}: not an SQLite database (it holds something else)")
    tables = _tables(path, where)
    if tables and not OPTUNA_TABLES.issubset(tables):
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise D3lmError(
            f"{where}: an SQLite database but not an Optuna storage (its tables: {shown}); "
            "give a new file"
        )
    if must_exist and not tables:
        raise D3lmError(f"{where}: an empty database, no Optuna storage in it")


def _tables(path: Path, where: str) -> set[str]:
    """The table names of an SQLite file, opened read-only (nothing is written to it)."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    except sqlite3.DatabaseError as err:
        raise D3lmError(f"{where}: unreadable SQLite database: {err}") from None
    return {str(name) for (name,) in rows}


def check_journal(path: Path, where: str, must_exist: bool) -> None:
    """An Optuna journal file: absent (created on a writable path), empty, or one JSON record a
    line. A last line without its newline is a record another worker is still writing."""
    if not _check_target(path, where, must_exist):
        return
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            partial = not line.endswith(b"\n")
            if partial and (line.startswith(RECORD_START) or RECORD_START.startswith(line)):
                break  # a record another worker is appending right now
            try:
                record = json.loads(line)
            except ValueError:  # JSONDecodeError, and UnicodeDecodeError for binary files
                record = None
            if not isinstance(record, dict) or not isinstance(record.get("op_code"), int):
                raise D3lmError(
                    f"{where}: not an Optuna journal (line {number} is not a journal record); "
                    "give a new file"
                )


def _check_target(path: Path, where: str, must_exist: bool) -> bool:
    """Whether ``path`` exists as a readable file to look into; a folder in its place, a
    missing file that must exist, an unreadable file or (when it will be written) a place
    where nothing can be written are errors."""
    if path.is_dir():
        raise D3lmError(f"{where}: is a directory, not a storage file")
    if must_exist:
        if not path.is_file():
            raise NotFound(f"{where}: no such storage file")
    else:
        problem = folder_problem(path.parent)  # SQLite and the journal's lock write beside it
        if problem is not None:
            raise D3lmError(f"{where}: cannot write here: {problem}")
        if path.exists() and not os.access(path, os.W_OK):
            raise D3lmError(f"{where}: not writable (permission denied)")
    if path.exists() and not os.access(path, os.R_OK):
        raise D3lmError(f"{where}: not readable (permission denied)")
    return path.exists()
