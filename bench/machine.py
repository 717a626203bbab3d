"""What every benchmark prints beside its figures: the machine, and the matmul peak it is
measured against; and how a benchmark's Markdown lands in BENCHMARKS.md."""

from __future__ import annotations

import platform
import re
import time
from pathlib import Path

import torch

#: CPU flags that decide how fast bf16 and fp32 matrix products run.
MATMUL_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_name() -> str:
    """The CPU model (``lscpu``'s "Model name")."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown CPU"
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or "unknown CPU"


def cpu_flags() -> list[str]:
    """Which of ``MATMUL_FLAGS`` this CPU reports."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    found = re.search(r"^flags\s*:(.*)$", text, re.M)
    have = set(found.group(1).split()) if found else set()
    return [flag for flag in MATMUL_FLAGS if flag in have]


def describe(device: str) -> str:
    """One line naming the machine a figure comes from."""
    where = f"{cpu_name()} ({', '.join(cpu_flags()) or 'no listed matmul flags'})"
    where += f", {torch.get_num_threads()} threads"
    if device.startswith("cuda"):
        where = f"{torch.cuda.get_device_name(device)}; host {where}"
    return f"{where}; torch {torch.__version__}"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def matmul_tflops(n: int, dtype: torch.dtype, device: str, budget_s: float = 3.0) -> float:
    """Best TFLOP/s of an n x n x n product over up to 10 timed repeats (after one warm-up),
    stopping early once ``budget_s`` is spent (emulated bf16 on a CPU is ~100x slower)."""
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, generator=g, device=device).to(dtype)
    b = torch.randn(n, n, generator=g, device=device).to(dtype)
    a @ b
    sync(device)
    best, spent = float("inf"), 0.0
    for _ in range(10):
        start = time.perf_counter()
        a @ b
        sync(device)
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
        if spent > budget_s:
            break
    return 2 * n**3 / best / 1e12


def matmul_peak(dtype: torch.dtype, device: str) -> tuple[float, int]:
    """(TFLOP/s, n) of the fastest square product size tried: the denominator of MFU."""
    if device.startswith("cuda"):
        sizes = (4096, 8192)
    else:
        sizes = (1024, 2048) if dtype == torch.float32 else (512,)
    return max((matmul_tflops(n, dtype, device), n) for n in sizes)


def splice(path: Path, section: str, text: str) -> None:
    """Replace the lines between ``<!-- bench:SECTION -->`` and ``<!-- /bench:SECTION -->`` in
    ``path`` with ``text`` (the markers stay), so ``make bench`` rewrites only its own figures."""
    begin, end = f"<!-- bench:{section} -->", f"<!-- /bench:{section} -->"
    doc = path.read_text()
    if begin not in doc or end not in doc:
        raise SystemExit(f"{path}: no {begin} ... {end} markers for this section")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(f"{head}{begin}\n{text.strip()}\n{end}{tail}")
    tmp.replace(path)
