"""``trainer.precision: auto`` and ``sample.autocast: auto``: bf16 only where this machine
multiplies bf16 natively.

A fixed precision is wrong on some machine: bf16 matmuls run about 4x faster than fp32 on a
CPU with AVX-512 BF16 or AMX, and tens of times slower where torch emulates them (AVX2 CPUs).
CPU flags alone do not say what torch's kernels make of them, so ``auto`` times a square matmul
in both dtypes and picks bf16 only when it is clearly faster; the result is cached per machine,
so a run pays for the probe once. On CUDA the device reports native bf16 itself. Sampling asks
the same question through the same function (:func:`resolve`), so training and sampling on one
machine never disagree about it.

``D3LM_FORCE_PRECISION`` overrides what ``auto`` picks on any machine: the test suite runs once
under each outcome on one CPU, and a cluster whose nodes differ can pin one precision for all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from d3lm.errors import D3lmError
from d3lm.io import write_text

AUTO = "auto"
#: What Lightning's Trainer takes (its aliases included; YAML reads ``precision: 32`` as an int).
LIGHTNING: tuple[str | int, ...] = (
    "transformer-engine",
    "transformer-engine-float16",
    "16-true",
    "16-mixed",
    "bf16-true",
    "bf16-mixed",
    "32-true",
    "64-true",
    "64",
    "32",
    "16",
    "bf16",
    64,
    32,
    16,
)
#: bf16 must beat fp32 by this factor: native kernels give ~4x, emulation ~0.01-0.1x.
MIN_SPEEDUP = 1.5
#: x86 CPU flags of native bf16 matmul instructions (reported, and part of the cache key).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: Environment variable: what ``auto`` resolves to, whatever the machine (unset: probe).
FORCE_ENV = "D3LM_FORCE_PRECISION"
#: The values ``auto`` can resolve to, and so the values ``FORCE_ENV`` may take.
OUTCOMES = ("bf16-mixed", "32-true")
#: What ``sample.autocast`` takes: null (fp32, no autocast), an autocast dtype, or ``auto``.
SAMPLE_AUTOCAST: tuple[str | None, ...] = (None, "bfloat16", "float16", AUTO)


@dataclass(frozen=True)
class Choice:
    """The precision a session trains in; ``reason`` says why ``auto`` chose it (None: the
    config named it)."""

    precision: str | int
    reason: str | None = None

    def line(self) -> str:
        return f"precision auto -> {self.precision}: {self.reason}"


@dataclass(frozen=True)
class Probe:
    """One machine's matmul timings (best of a few runs, seconds) and what identifies it."""

    cpu: str
    torch: str
    capability: str  # torch's CPU kernel level, e.g. AVX2, AVX512
    flags: tuple[str, ...]  # the BF16_FLAGS this CPU reports
    size: int
    fp32_s: float
    bf16_s: float

    @property
    def speedup(self) -> float:
        """bf16 matmul speed as a multiple of fp32's."""
        return self.fp32_s / self.bf16_s

    def choice(self) -> Choice:
        """bf16-mixed where bf16 is at least ``MIN_SPEEDUP`` times faster, else fp32."""
        flags = ", ".join(self.flags) or f"no {'/'.join(BF16_FLAGS)}"
        return Choice(
            "bf16-mixed" if self.speedup >= MIN_SPEEDUP else "32-true",
            f"bf16 matmul {self.speedup:.2f}x fp32 on {self.cpu} "
            f"(cpu flags: {flags}; torch kernels: {self.capability})",
        )


@dataclass(frozen=True)
class Autocast:
    """The dtype a sampler's network runs in under autocast (``dtype`` None: fp32, no autocast);
    ``reason`` says why ``sample.autocast: auto`` chose it (None: the config named it)."""

    requested: str | None
    dtype: torch.dtype | None
    reason: str | None = None

    @property
    def name(self) -> str:
        """``bfloat16``, ``float16`` or ``float32`` (no autocast)."""
        return str(self.dtype or torch.float32).removeprefix("torch.")

    def line(self) -> str:
        return f"sample.autocast {self.requested} -> {self.name}: {self.reason}"


def check_autocast(value: object) -> None:
    """Refuse a ``sample.autocast`` value that is none of :data:`SAMPLE_AUTOCAST`."""
    if not any(value is v or (isinstance(value, str) and value == v) for v in SAMPLE_AUTOCAST):
        known = ", ".join(v or "null" for v in SAMPLE_AUTOCAST)
        raise D3lmError(f"sample.autocast={value!r}: use one of {known}")


def sample_autocast(requested: str | None, device: str, cache_dir: Path | None) -> Autocast:
    """``sample.autocast`` for a network on ``device`` (``cpu`` or ``cuda``): ``auto`` runs it
    under bf16 autocast exactly where ``trainer.precision: auto`` would train in bf16-mixed
    (:func:`resolve`: the same probe, cache and ``FORCE_ENV``), else in fp32."""
    check_autocast(requested)
    if requested != AUTO:
        return Autocast(requested, None if requested is None else getattr(torch, requested))
    choice = resolve(AUTO, device, cache_dir)
    dtype = torch.bfloat16 if choice.precision == "bf16-mixed" else None
    return Autocast(AUTO, dtype, choice.reason)


def resolve(requested: str | int, accelerator: str, cache_dir: Path | None) -> Choice:
    """The Lightning precision for ``trainer.precision=requested``: other values pass through
    untouched, ``auto`` asks the device (CUDA) or times the CPU (cached under ``cache_dir``;
    None: no cache)."""
    if requested == AUTO:
        return forced() or _auto(str(accelerator), cache_dir)
    if requested not in LIGHTNING:
        known = ", ".join(str(p) for p in (AUTO, *LIGHTNING) if isinstance(p, str))
        raise D3lmError(f"trainer.precision={requested!r}: not a precision; use one of {known}")
    return Choice(requested)


def forced() -> Choice | None:
    """The outcome ``FORCE_ENV`` imposes on ``auto``, or None when it is unset."""
    value = os.environ.get(FORCE_ENV, "").strip()
    if not value:
        return None
    if value not in OUTCOMES:
        raise D3lmError(f"{FORCE_ENV}={value!r}: use one of {', '.join(OUTCOMES)} (or unset it)")
    return Choice(value, f"forced by {FORCE_ENV}")


def _auto(accelerator: str, cache_dir: Path | None) -> Choice:
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return Choice("bf16-mixed", f"{name} multiplies bf16 natively")
        return Choice("32-true", f"{name} has no native bf16")
    if accelerator == "cpu" or (accelerator == "auto" and not torch.backends.mps.is_available()):
        return cpu_probe(cache_dir).choice()
    return Choice("32-true", f"no bf16 check for accelerator {accelerator!r}")


def cpu_probe(cache_dir: Path | None, size: int = 512) -> Probe:
    """This CPU's probe, from ``cache_dir/precision/`` when this machine (CPU model, its bf16
    flags, torch version and kernel level) has one there; else measured and cached."""
    key = {
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "flags": bf16_flags(),
        "size": size,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir) / "precision" / f"{digest}.json" if cache_dir is not None else None
    if path is not None and path.is_file():
        with contextlib.suppress(ValueError, TypeError, KeyError):  # unreadable: probe again
            saved = json.loads(path.read_text(encoding="utf-8"))
            probe = Probe(**{**saved, "flags": tuple(saved["flags"])})
            if {k: getattr(probe, k) for k in key} == key:
                return probe
    probe = Probe(
        **key,
        fp32_s=matmul_seconds(torch.float32, size),
        bf16_s=matmul_seconds(torch.bfloat16, size),
    )
    if path is not None:
        write_text(path, json.dumps(dataclasses.asdict(probe), indent=1))
    return probe


def matmul_seconds(
    dtype: torch.dtype, size: int = 512, repeats: int = 5, budget_s: float = 0.1
) -> float:
    """Best time of one ``size`` x ``size`` matmul in ``dtype``: the first run is a warm-up and
    up to ``repeats`` follow, stopping once ``budget_s`` is spent, so that an emulated bf16
    matmul (~0.2 s at 512 on one AVX2 core) is timed once and the probe stays well under 1 s."""
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=gen).to(dtype) for _ in range(2))
    times: list[float] = []
    while len(times) <= repeats:
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
        if sum(times) > budget_s:
            break
    return min(times[1:] or times)


def _cpuinfo() -> dict[str, str]:
    """The first value of each ``/proc/cpuinfo`` field (empty where there is none: not Linux)."""
    info: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            name, sep, value = line.partition(":")
            if sep:
                info.setdefault(name.strip(), value.strip())
    return info


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine() or "cpu"


def bf16_flags() -> tuple[str, ...]:
    flags = set(_cpuinfo().get("flags", "").split())
    return tuple(f for f in BF16_FLAGS if f in flags)
