"""Storage URLs of ``d3lm sweep``: the kinds supported, the driver each URL is opened with, and
how a URL is shown in messages (its password masked).

A bare ``postgresql://`` (or ``postgres://``) URL is given the PostgreSQL driver that is
installed, rather than the ``postgres`` extra being changed to match SQLAlchemy's default:
SQLAlchemy's default driver for the bare form moved from psycopg2 (before 2.1) to psycopg 3
(2.1), and a cluster's environment may hold either, so no single extra makes the bare URL work
everywhere, while asking which driver is importable does. A URL that names its driver
(``postgresql+psycopg2://``) is kept as written, and a driver that is missing is named with the
command that installs it.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from d3lm.errors import D3lmError
from d3lm.sweeps.storage_files import check_journal, check_sqlite

#: Seconds a PostgreSQL connection attempt may take (an unreachable host otherwise hangs).
CONNECT_TIMEOUT_S = 10

FileCheck = Callable[[Path, str, bool], None]


@dataclass(frozen=True)
class Backend:
    """A kind of storage: how its URL is written and where it serves, the SQLAlchemy drivers
    that open it (driver -> the module it needs, preferred first), SQLAlchemy engine and driver
    connect arguments, how to install a driver, and the check of its file for file kinds."""

    form: str
    use: str
    drivers: Mapping[str, str] = field(default_factory=dict)
    engine: Mapping[str, Any] = field(default_factory=dict)
    connect: Mapping[str, Any] = field(default_factory=dict)
    install: str = ""
    check_file: FileCheck | None = None


BACKENDS: dict[str, Backend] = {
    "sqlite": Backend(
        "sqlite:///FILE",
        "one machine",
        drivers={"pysqlite": "sqlite3"},
        # workers wait for each other's writes instead of failing with "database is locked"
        connect={"timeout": 60},
        check_file=check_sqlite,
    ),
    "journal": Backend("journal:///FILE", "a shared filesystem", check_file=check_journal),
    "postgresql": Backend(
        "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE",
        "a server",
        # psycopg2 first: what the `postgres` extra installs and the tests run
        drivers={"psycopg2": "psycopg2", "psycopg": "psycopg"},
        engine={"pool_pre_ping": True},
        connect={"connect_timeout": CONNECT_TIMEOUT_S},
        install='pip install -e ".[postgres]"',
    ),
}
#: Other spellings of a kind (SQLAlchemy itself no longer accepts ``postgres://``).
ALIASES = {"postgres": "postgresql"}


@dataclass(frozen=True)
class StorageURL:
    """A checked storage URL: ``kind`` (a key of BACKENDS), what Optuna opens (``url``: a
    SQLAlchemy URL with its driver; None for a journal, which is ``path``), the file of
    file-based kinds, and the URL as given with its password masked (``shown``)."""

    kind: str
    url: str | None
    path: Path | None
    shown: str

    @property
    def backend(self) -> Backend:
        return BACKENDS[self.kind]

    def check_file(self, must_exist: bool = False) -> None:
        """The storage file checked (nothing written); ``must_exist``: for reading a study."""
        if self.backend.check_file is not None and self.path is not None:
            self.backend.check_file(self.path, f"storage {self.shown}", must_exist)

    def engine_kwargs(self) -> dict[str, Any]:
        """SQLAlchemy engine arguments; connect arguments the URL's query sets are kept."""
        query = make_url(self.url).query if self.url else {}
        connect = {k: v for k, v in self.backend.connect.items() if k not in query}
        return {**self.backend.engine, **({"connect_args": connect} if connect else {})}


def mask(url: str) -> str:
    """``scheme://user:***@host/...``: a URL fit for messages and logs."""
    return re.sub(r"^([^:/@]+://[^:/@]*:)[^/]*@", r"\1***@", url)  # to the host's @


def supported() -> str:
    return "; ".join(f"{b.form} ({b.use})" for b in BACKENDS.values())


def parse_storage(text: str) -> StorageURL:
    """``text`` as a StorageURL, its driver made explicit; an unsupported scheme, an unknown or
    missing driver or a URL without a file or database is a D3lmError naming the URL."""
    shown = mask(text)
    scheme, sep, rest = text.partition("://")
    kind, _, driver = scheme.partition("+")
    kind = ALIASES.get(kind, kind)
    if not sep or kind not in BACKENDS:
        what = f"unsupported scheme {scheme + '://'!r}" if sep else "not a storage URL"
        raise D3lmError(f"storage {shown}: {what}; supported: {supported()}")
    if not BACKENDS[kind].drivers:  # not a database: the rest of the URL is the file
        if driver or not Path(rest).name:
            raise D3lmError(f"storage {shown}: expected {BACKENDS[kind].form}")
        return StorageURL(kind, None, Path(rest), shown)
    try:
        url = make_url(text)
    except ArgumentError:
        raise D3lmError(f"storage {shown}: not a valid URL; supported: {supported()}") from None
    url = url.set(drivername=f"{kind}+{_driver(kind, driver, shown)}")
    path = None
    if BACKENDS[kind].check_file is not None:
        if url.database in (None, "", ":memory:"):
            raise D3lmError(
                f"storage {shown}: an in-memory database keeps no study beyond this process; "
                f"give a file: {BACKENDS[kind].form}"
            )
        path = Path(url.database)
    return StorageURL(kind, url.render_as_string(hide_password=False), path, shown)


def _driver(kind: str, driver: str, shown: str) -> str:
    """The driver a URL is opened with: the one it names, else the first one installed."""
    backend = BACKENDS[kind]
    if driver and driver not in backend.drivers:
        raise D3lmError(
            f"storage {shown}: unknown {kind} driver {driver!r}; "
            f"supported: {', '.join(backend.drivers)}"
        )
    installed = [name for name, module in backend.drivers.items() if _importable(module)]
    if driver in installed or (installed and not driver):
        return driver or installed[0]
    if driver and installed:
        raise D3lmError(
            f"storage {shown}: driver {driver!r} is not installed; install it, or write "
            f"{kind}:// to use {installed[0]}, which is"
        )
    raise D3lmError(
        f"storage {shown}: no {kind} driver is installed ({' or '.join(backend.drivers)}); "
        f"{backend.install}"
    )


def _importable(module: str) -> bool:
    """Whether ``module`` can be imported (found without importing it)."""
    return importlib.util.find_spec(module) is not None


__all__ = ["ALIASES", "BACKENDS", "Backend", "StorageURL", "mask", "parse_storage"]
