"""One run folder, one writer: an exclusive lock held while a process trains into a folder.

Two processes aimed at one run folder (the same command started twice, two shards given one
point, a requeued job whose first copy still runs) would interleave their checkpoints and logs.
The lock is an ``fcntl.flock`` on ``.<run>.lock`` beside the folder, so the folder itself holds
only what the run writes; the file records who holds it (pid, host, start), and a second process
is refused at once, naming the folder and the holder. The kernel drops the lock when its process
dies, however it dies, so a killed run never leaves its folder locked; flock works across nodes
on NFS (emulated with byte-range locks) and on Lustre mounted with ``flock``.

Under DDP only global rank 0 takes it: the other ranks train into the same folder by design.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from lightning.fabric.utilities.rank_zero import rank_zero_only

from d3lm.errors import D3lmError

#: Folders this process holds, with their nesting depth (an ablation point locks its folder
#: around training, which locks it again).
_held: dict[Path, int] = {}


class RunBusy(D3lmError):
    """Another process holds the run folder."""


def lock_file(run_dir: Path) -> Path:
    return run_dir.parent / f".{run_dir.name}.lock"


@contextlib.contextmanager
def hold(run_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``run_dir`` for this process, or raise :class:`RunBusy` at once. The lock leaves
    nothing behind: its file goes when it is released, and so do the parent folders it made,
    if nothing else was written there."""
    run_dir = Path(run_dir)
    key = run_dir.absolute()
    if rank_zero_only.rank != 0:  # the other DDP ranks train into rank 0's folder
        yield
        return
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
            if not _held[key]:
                del _held[key]
        return
    path = lock_file(run_dir)
    made = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    fd = _acquire(path, run_dir)
    _held[key] = 1
    try:
        yield
    finally:
        del _held[key]
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # while holding it: a process that opens the old file retries
        os.close(fd)
        for folder in made:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break


def _acquire(path: Path, run_dir: Path) -> int:
    """An open descriptor of ``path`` holding the lock, stamped with this process."""
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:  # its folder was removed meanwhile by a releasing holder
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunBusy(
                f"{run_dir}: in use by {holder} (lock {path}); one run folder takes one "
                "writer at a time"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed that file as it released it: lock the new one
    since = time.strftime("%Y-%m-%d %H:%M:%S")
    stamp = f"pid {os.getpid()} on {socket.gethostname()} since {since}"
    os.ftruncate(fd, 0)
    os.write(fd, stamp.encode())
    return fd


__all__ = ["RunBusy", "hold", "lock_file"]
