"""Optuna storages from one URL, each with a heartbeat so a killed worker's trial is re-queued.

- ``sqlite:///path.db``: one machine (SQLite locking is unreliable on network filesystems).
- ``journal:///abs/path.log`` or ``journal://relative/path.log``: Optuna's journal file backend,
  for a shared filesystem (NFS, Lustre) with no database server.
- ``postgresql://user@host:port/db`` (or ``postgresql+psycopg2://``, ``postgresql+psycopg://``):
  clusters; a bare URL gets the driver that is installed (``d3lm.sweeps.urls``).

The URL and the storage file are checked first (``urls``, ``storage_files``), and a server that
cannot be reached is a one-line error naming the URL with its password masked.

A RUNNING trial whose worker stopped beating for ``grace`` seconds is marked FAIL by the next
worker that looks, and :class:`optuna.storages.RetryHeartbeatStaleTrialCallback` enqueues it again
with the same parameters. Optuna's journal storage has no heartbeat of its own, so
:class:`HeartbeatJournalStorage` keeps one in a trial system attribute: each beat appends one
line to the journal, and workers compare wall clocks (keep nodes NTP-synced, grace >> skew).
"""

from __future__ import annotations

import contextlib
import functools
import random
import time
import warnings
from collections.abc import Callable

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import (
    BaseStorage,
    JournalStorage,
    RDBStorage,
    RetryHeartbeatStaleTrialCallback,
)
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from d3lm.errors import D3lmError
from d3lm.sweeps.urls import StorageURL, parse_storage

CREATE_ATTEMPTS = 5
HEARTBEAT_ATTR = "d3lm:heartbeat"

StaleCallback = Callable[[optuna.Study, FrozenTrial], None]


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """A journal storage with the RDB storage's heartbeat contract (Optuna drives both alike:
    a thread beats while a trial runs, and each new trial first fails the stale ones)."""

    def __init__(
        self,
        backend: JournalFileBackend,
        heartbeat_interval: int,
        grace_period: int,
        stale_callback: StaleCallback | None,
    ) -> None:
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.stale_callback = stale_callback

    def record_heartbeat(self, trial_id: int) -> None:
        # UpdateFinishedTrialError: declared stale by another worker meanwhile (retry queued)
        with contextlib.suppress(UpdateFinishedTrialError):
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            if HEARTBEAT_ATTR not in t.system_attrs:  # no heartbeat worker: never stale (as RDB)
                continue
            # a retried trial inherits its failed original's last beat: count from its start
            start = t.datetime_start.timestamp() if t.datetime_start else 0.0
            if now - max(t.system_attrs[HEARTBEAT_ATTR], start) > self.grace_period:
                stale.append(t._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> StaleCallback | None:
        return self.stale_callback


def open_storage(
    url: str, heartbeat: int | None = None, grace: int | None = None, max_retry: int | None = 3
) -> BaseStorage:
    """The storage behind ``url``; with ``heartbeat`` (seconds) stale trials fail after
    ``grace`` seconds (default 3 beats) and are retried up to ``max_retry`` times. A bad URL,
    a file that is not a storage or a server that cannot be reached is a D3lmError."""
    target = parse_storage(url)
    target.check_file()
    return _open(target, heartbeat, grace, max_retry)


def existing_storage(url: str) -> BaseStorage:
    """The storage of a study that must exist already (reports): no file is created."""
    target = parse_storage(url)
    target.check_file(must_exist=True)
    return _open(target)


def _open(
    target: StorageURL,
    heartbeat: int | None = None,
    grace: int | None = None,
    max_retry: int | None = 3,
) -> BaseStorage:
    """The storage of a checked ``target``; a file's missing folders are made first (neither
    SQLite nor the journal backend makes them)."""
    if heartbeat is not None and grace is None:
        grace = 3 * heartbeat
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry) if heartbeat else None
    if target.path is not None:
        target.path.parent.mkdir(parents=True, exist_ok=True)
    if target.url is None:  # a journal file
        assert target.path is not None
        backend = JournalFileBackend(str(target.path))
        if heartbeat is None:
            return JournalStorage(backend)
        return HeartbeatJournalStorage(backend, heartbeat, grace or 0, retry)
    make = functools.partial(
        RDBStorage,
        target.url,
        engine_kwargs=target.engine_kwargs(),
        heartbeat_interval=heartbeat,
        grace_period=grace,
        heartbeat_stale_trial_callback=retry,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeat_interval
        attempt = 0
        while True:
            attempt += 1
            try:
                return make()
            except (IntegrityError, OperationalError, ProgrammingError) as err:
                # workers started together on a fresh database race to create Optuna's tables
                # (or the server is still starting): the loser finds them on the next attempt
                if attempt == CREATE_ATTEMPTS:
                    raise D3lmError(f"storage {target.shown}: {_reason(err)}") from None
                time.sleep(0.5 + random.random() * attempt)
            except RuntimeError as err:  # Optuna: the tables are of another Optuna version
                raise D3lmError(f"storage {target.shown}: {_reason(err)}") from None


def _reason(err: Exception) -> str:
    """The driver's message (refused, unknown host, bad password, no such database) on one
    line (drivers never repeat the password in it)."""
    cause = getattr(err, "orig", None) or err
    text = " ".join(str(cause).split()) or type(cause).__name__
    kind = "cannot connect" if isinstance(err, OperationalError) else "cannot use it"
    return f"{kind}: {text}"
