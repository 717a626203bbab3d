"""SIGTERM and SIGINT end a command with exit code 128 + the signal (143, 130) and one line that
says where the work stopped and how to continue it, never a traceback (Lightning alone exits 0).

The CLI runs every command inside :func:`signals`, which turns either signal into
:class:`Interrupted` raised wherever the program is. Training runs inside :func:`deferred`
instead: there a signal is only noted, and the trainer polls :func:`pending` at the end of each
step, where it saves a checkpoint of that step and stops (``runner.StopOnSignal``). A second
SIGINT while deferred stops at once (the user insists); a second SIGTERM does not, since
schedulers send it more than once (SLURM to ``srun`` and to its tasks). Layers that know where
the work is say so with :func:`at`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """A command stopped by SIGTERM or SIGINT.

    A ``BaseException``, as ``KeyboardInterrupt`` is, so that handlers of ``Exception`` (a reader
    that reports any error as an unreadable file, Optuna's failed-trial path, which logs a
    traceback) let it through to the CLI.
    """

    def __init__(self, signum: int, where: str | None = None) -> None:
        super().__init__(signum, where)
        self.signum = signum
        #: Where the work stopped and what is kept, set by the innermost layer that knows.
        self.where = where
        #: The run folder a training left to resume (None: it kept nothing).
        self.run_dir: Path | None = None
        #: Arguments the continuing command needs besides the interrupted one's.
        self.extra: list[str] = []

    @property
    def code(self) -> int:
        """The exit code a shell reports for a process killed by the signal."""
        return 128 + self.signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    def __str__(self) -> str:
        return f"interrupted by {self.name}: {self.where or 'stopped'}"


class _State:
    depth = 0  #: nesting of deferred()
    pending: int | None = None  #: a signal deferred() has noted and nobody has acted on


def _handle(signum: int, frame: FrameType | None) -> None:
    if _State.depth and (_State.pending is None or signum == signal.SIGTERM):
        _State.pending = _State.pending or signum
        return
    raise Interrupted(signum)


def take_back() -> None:
    """Handle both signals here again: Lightning installs its own SIGTERM handler when ``fit``
    starts (and restores the previous ones when it ends); its handler would stop the loops
    mid-validation, or after a step's bookkeeping, where the saved state would not resume
    exactly, and exit 0."""
    if threading.current_thread() is threading.main_thread():
        for signum in SIGNALS:
            if signal.getsignal(signum) != signal.SIG_IGN:
                signal.signal(signum, _handle)


@contextlib.contextmanager
def signals() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into :class:`Interrupted` for the duration (main thread); a
    signal this process was started ignoring stays ignored (``nohup``, a shell's ``&``)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {
        signum: signal.signal(signum, _handle)
        for signum in SIGNALS
        if signal.getsignal(signum) != signal.SIG_IGN
    }
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
        _State.pending = None


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Inside, a first signal is only noted (:func:`pending`); one nobody acted on is raised as
    :class:`Interrupted` when the block ends."""
    _State.depth += 1
    try:
        yield
    finally:
        _State.depth -= 1
        signum = None if _State.depth else _State.pending
        if signum is not None:
            _State.pending = None
    if signum is not None:
        raise Interrupted(signum)


def pending() -> int:
    """The signal noted inside :func:`deferred`, or 0."""
    return _State.pending or 0


def drop() -> None:
    """Forget the noted signal: the work it would have stopped has finished."""
    _State.pending = None


@contextlib.contextmanager
def at(where: str) -> Iterator[None]:
    """Say ``where`` an :class:`Interrupted` passing through stopped, unless an inner layer
    said it already."""
    try:
        yield
    except Interrupted as err:
        if err.where is None:
            err.where = where
        raise


__all__ = ["Interrupted", "at", "deferred", "drop", "pending", "signals", "take_back"]
