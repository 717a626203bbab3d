"""Value ranges a run refuses before it starts (what the trainer or sampler would not check)."""

from __future__ import annotations

import math
from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf

from d3lm.config import BASE_YAML, config_ranges
from d3lm.errors import D3lmError
from d3lm.params import SEED

#: The rules of base.yaml's keys (:data:`d3lm.params.CONFIG_RANGES`) but ``sample.*``
#: (:data:`SAMPLE_RANGES`): values the trainer would not check, or would accept and then train
#: nothing (max_steps=0 saves an untouched model); ``train`` refuses them before starting.
RANGES: dict[str, tuple[Callable[[float], bool], str]] = config_ranges(BASE_YAML, ["sample"])
#: What ``sample`` refuses, null included; grids and sweeps check them before they train.
SAMPLE_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    **{
        f"sample.{key}": (lambda v: isinstance(v, int) and v >= 1, "a positive integer")
        for key in ("n", "bp", "batch_size")
    },
    "sample.seed": SEED,
    # classifier-free guidance's w: 0 is the conditional model itself, negative would steer away
    "sample.guidance": (
        lambda v: isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < math.inf,
        "a finite number >= 0",
    ),
}


def check_ranges(
    cfg: DictConfig, ranges: dict[str, tuple[Callable[[float], bool], str]] = RANGES
) -> None:
    for key, (ok, wanted) in ranges.items():
        value = OmegaConf.select(cfg, key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise D3lmError(f"{key}={value!r}: expected a number ({wanted})")
        if not ok(value):
            raise D3lmError(f"{key}={value!r}: must be {wanted}")
