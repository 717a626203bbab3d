"""What this machine can compute on, so that a config asking for a device it lacks
(``trainer.accelerator=gpu`` on a CPU-only machine, ``sample.device=cuda`` without CUDA) is one
line naming the key and what the machine has, before anything is built or written, instead of a
Lightning or torch traceback halfway in.

Lightning's accelerator registry is the list of names: a new accelerator it learns is known here
with no change.
"""

from __future__ import annotations

from lightning.pytorch.accelerators import AcceleratorRegistry

from d3lm.errors import D3lmError

#: Names Lightning takes besides its registry's: ``gpu`` is any of these kinds.
ALIASES: dict[str, tuple[str, ...]] = {"gpu": ("cuda", "mps")}
AUTO = "auto"


def is_available(name: str) -> bool:
    """Whether the registered accelerator ``name`` (or an alias) can run here."""
    kinds = ALIASES.get(name, (name,))
    return any(AcceleratorRegistry[kind]["accelerator"].is_available() for kind in kinds)


def present() -> str:
    """The accelerators this machine has, with device counts: ``cpu, cuda (2 devices)``."""
    found = []
    for name in sorted(AcceleratorRegistry.available_accelerators()):
        accelerator = AcceleratorRegistry[name]["accelerator"]
        if accelerator.is_available():
            count = accelerator.auto_device_count() if name != "cpu" else 0
            found.append(f"{name} ({count} device{'s' * (count != 1)})" if count else name)
    return ", ".join(found)


def check_accelerator(key: str, value: object) -> None:
    """Refuse an accelerator name Lightning does not know, or one this machine lacks."""
    known = sorted(AcceleratorRegistry.available_accelerators())
    if value == AUTO:
        return
    if not isinstance(value, str) or (value not in known and value not in ALIASES):
        names = ", ".join([AUTO, *ALIASES, *known])
        raise D3lmError(f"{key}={value!r}: expected one of {names}")
    if not is_available(value):
        raise D3lmError(
            f"{key}={value!r}: this machine has no {value} device (it has: {present()}); "
            f"use {key}={AUTO} or cpu"
        )


def check_device(key: str, spec: str, kind: str) -> None:
    """Refuse ``spec``, a torch device of type ``kind`` (``cuda``, ``mps`` ...), where this
    machine has no such device."""
    if kind in AcceleratorRegistry and not is_available(kind):
        raise D3lmError(f"{key}={spec!r}: this machine has no {kind} device (it has: {present()})")
