"""The checks behind the table of tests/test_bad_inputs_params.py, called directly: a plugin's
declared parameter types and ranges (d3lm.params, presets included), and the good twin of the
device cases: an emulated machine with two GPUs passes the accelerator check and is described."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import pytest
from lightning.pytorch.accelerators import CUDAAccelerator, MPSAccelerator

from d3lm.devices import check_accelerator, present
from d3lm.errors import D3lmError
from d3lm.params import PositiveInt, Range, Seed, check_values

# -- the declaration mechanism --------------------------------------------------------------------


def _plugin(
    n: PositiveInt = 1,
    seed: Seed = 0,
    width: PositiveInt | None = None,
    odd: Annotated[int, Range(lambda v: v % 2 == 1, "odd")] = 1,
    rate: float = 0.5,
    flag: bool = True,
    path: str | Path = ".",
) -> None:
    """A plugin factory declaring its parameters as the built-in plugins do."""


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"n": 1, "seed": 2**32 - 1, "width": None, "odd": 3, "rate": 2, "flag": False}, None),
        ({"path": 5, "undeclared": "anything"}, None),  # not a number or flag: not checked
        ({"n": 0}, "n=0: must be >= 1"),
        ({"n": True}, "n=True: expected an integer"),
        ({"n": "3"}, "n='3': expected an integer"),
        ({"seed": 2**32}, f"seed={2**32}: must be an integer in [0, 2**32)"),
        ({"width": 0}, "width=0: must be >= 1"),
        ({"width": "wide"}, "width='wide': expected an integer or null"),
        ({"odd": 4}, "odd=4: must be odd"),
        ({"rate": "fast"}, "rate='fast': expected a number"),
        ({"flag": "yes"}, "flag='yes': expected true or false"),
    ],
)
def test_declared_types_and_ranges_are_checked(params: dict, problem: str | None) -> None:
    assert check_values(_plugin, params) == problem
    assert check_values(functools.partial(_plugin, n=2), params) == problem  # presets


def test_a_machine_with_a_gpu_passes_and_is_described(monkeypatch: pytest.MonkeyPatch) -> None:
    """The good twin of the device cases, on an emulated two-GPU CUDA machine."""
    monkeypatch.setattr(CUDAAccelerator, "is_available", staticmethod(lambda: True))
    monkeypatch.setattr(CUDAAccelerator, "auto_device_count", staticmethod(lambda: 2))
    monkeypatch.setattr(MPSAccelerator, "is_available", staticmethod(lambda: False))
    for name in ("auto", "cpu", "gpu", "cuda"):
        check_accelerator("trainer.accelerator", name)
    assert present() == "cpu, cuda (2 devices)"
    with pytest.raises(
        D3lmError, match=r"'mps': this machine has no mps device \(it has: cpu, cuda"
    ):
        check_accelerator("trainer.accelerator", "mps")
