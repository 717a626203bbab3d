"""What every benchmark prints beside its figures: the machine, and the matmul peak it is
measured against; and how a benchmark's Markdown lands in BENCHMARKS.md."""

from __future__ import annotations

import platform
import re
import time
from pathlib import Path

import torch

from d3lm import io
from d3lm.errors import D3lmError

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
    """(TFLOP/s, n) of the fastest square product size tried: the denominator of MFU. On a CPU
    sizes grow from 512 while one product stays under half a second, so emulated bf16 (~100x
    slower) stops at 512 and native bf16 reaches the sizes where its kernels peak."""
    if device.startswith("cuda"):
        return max((matmul_tflops(n, dtype, device), n) for n in (4096, 8192))
    best = (0.0, 0)
    for n in (512, 1024, 2048):
        tflops = matmul_tflops(n, dtype, device)
        best = max(best, (tflops, n))
        if 2 * n**3 / (tflops * 1e12) > 0.5:
            break
    return best


def splice(path: Path, section: str, text: str) -> None:
    """Replace the ``<!-- bench:SECTION -->`` part of ``path`` with ``text``, so ``make bench``
    rewrites only its own figures."""
    try:
        io.splice(path, f"bench:{section}", text)
    except D3lmError as err:
        raise SystemExit(str(err)) from None
