"""Value ranges a run refuses before it starts (what the trainer or sampler would not check)."""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf

from d3lm.errors import D3lmError
from d3lm.params import SEED

#: Values the trainer would not check, or would accept and then train nothing (max_steps=0
#: saves an untouched model, lr=0 never moves it); ``train`` refuses them before starting.
RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "seed": SEED,
    "trainer.max_steps": (lambda v: v >= 1, ">= 1"),
    "trainer.num_nodes": (lambda v: v >= 1, ">= 1"),
    "trainer.val_check_interval": (lambda v: v >= 1, ">= 1"),
    "trainer.checkpoint_every_n_steps": (lambda v: v >= 1, ">= 1"),
    "trainer.log_every_n_steps": (lambda v: v >= 1, ">= 1"),
    "trainer.limit_val_batches": (lambda v: v >= 0, ">= 0"),
    "trainer.gradient_clip_val": (lambda v: v >= 0, ">= 0"),
    "optim.lr": (lambda v: v > 0, "> 0"),
    "optim.weight_decay": (lambda v: v >= 0, ">= 0"),
    "optim.warmup_steps": (lambda v: v >= 0, ">= 0"),
    "optim.min_lr_ratio": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "data.batch_size": (lambda v: v >= 1, ">= 1"),
    "data.eval_batch_size": (lambda v: v >= 1, ">= 1"),
    "data.num_workers": (lambda v: v >= 0, ">= 0"),
}

#: What ``sample`` refuses, null included; grids and sweeps check them before they train.
SAMPLE_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    **{
        f"sample.{key}": (lambda v: isinstance(v, int) and v >= 1, "a positive integer")
        for key in ("n", "bp", "batch_size")
    },
    "sample.seed": SEED,
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
