"""One sampling job split over worker processes on the CPU, with the output of one process.

Why processes: a sampler's step is many short tensor operations between network calls, which
intra-op threads do not share out, while independent processes each keep a core busy (on this
project's 2-core CPU the gain was modest: BENCHMARKS.md). Each worker samples a contiguous run
of whole batches of global sequence ids (``Sampler.sample(first_index=...)``: the counter-based
draws depend on the id alone) with ``cores // workers`` threads, and the parent concatenates the
parts in order. Workers are spawned (no inherited threads or locks) and given a job that loads
its own model, so nothing large is pickled. On a GPU one process already fills the device: use
one worker there.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from itertools import pairwise
from typing import Any, TypeVar

import torch
import torch.multiprocessing as mp

from d3lm.errors import D3lmError

T = TypeVar("T")

#: The config value for one worker per core this process may run on (see ``resolve``).
AUTO = "auto"


def cores() -> int:
    """Cores this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0))


def resolve(value: Any, key: str, batches: int) -> int:
    """``value`` (an integer >= 1, or ``auto``) as a number of processes; ``key`` names it in
    the error. ``auto`` is one per core but at most ``batches`` (the job's batches): a process
    takes seconds to start (imports), which a job of one batch per core would not win back."""
    if value == AUTO:
        return max(1, min(cores(), batches))
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise D3lmError(f"{key}={value!r}: must be an integer >= 1 or {AUTO!r}")
    return value


def ranges(n: int, parts: int) -> list[range]:
    """``range(n)`` cut into ``parts`` contiguous ranges whose sizes differ by at most one
    (earlier ones larger); fewer when ``n < parts``, so none is empty."""
    parts = max(1, min(parts, n))
    size, extra = divmod(n, parts)
    starts = [i * size + min(i, extra) for i in range(parts + 1)]
    return [range(a, b) for a, b in pairwise(starts)]


def batch_ranges(n: int, parts: int, batch: int) -> list[range]:
    """``range(n)`` cut into up to ``parts`` contiguous ranges of whole ``batch``-sized batches
    (the last batch may be short), so each batch is the one a single process would run."""
    return [range(r.start * batch, min(r.stop * batch, n)) for r in ranges(-(-n // batch), parts)]


def run(job: Callable[[range], T], n: int, workers: int, batch: int = 1) -> list[T]:
    """``job(part)`` for each of up to ``workers`` contiguous parts of ``range(n)`` made of
    whole ``batch``-sized batches, results in order: in this process for one part, else in
    spawned processes of ``cores() // parts`` threads each. Whole batches keep every batch what
    one process would make it (a remasking sampler's batch stops once none of its rows has a
    mask left). ``job`` must pickle (a module-level function or a ``functools.partial`` of one),
    and a script that gets here needs the usual ``if __name__ == "__main__":`` guard (spawn
    re-imports it)."""
    parts = batch_ranges(n, workers, batch)
    if len(parts) == 1:
        return [job(parts[0])]
    threads = max(1, cores() // len(parts))
    before = set(mp.active_children())
    with ProcessPoolExecutor(len(parts), mp_context=mp.get_context("spawn")) as pool:
        try:
            with _sigint_blocked():
                results = pool.map(_in_worker, [job] * len(parts), parts, [threads] * len(parts))
            return list(results)
        except BaseException:  # Interrupted, or a worker's error: the others' work is lost anyway
            for worker in set(mp.active_children()) - before:
                worker.kill()
            raise


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT blocked while the workers are spawned, so that they run with it blocked (a mask
    survives fork and exec): Ctrl-C reaches the terminal's whole process group, and only this
    process should act on it (stop the workers, say where it stopped), not every worker with a
    traceback of its own. A SIGINT meanwhile is delivered here when the block ends."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _in_worker(job: Callable[[range], T], part: range, threads: int) -> T:
    torch.set_num_threads(threads)
    return job(part)
