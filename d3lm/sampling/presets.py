"""Named samplers: each is ``Sampler`` with some axes preset (overridable by keyword), so an
ablation grid is a product of options, never a separate code path."""

from __future__ import annotations

import functools
from typing import Any

from d3lm.registry import SAMPLERS
from d3lm.sampling.causal import LeftToRightSampler
from d3lm.sampling.loop import Sampler

#: preset -> axis settings; every other ``Sampler`` argument keeps its default.
PRESETS: dict[str, dict[str, Any]] = {
    # The D3LM paper's choice: random order, T = 50, temperature 1.1.
    "random": {"order": "random", "count": "fixed", "steps": 50, "temperature": 1.1},
    "ancestral": {"order": "random", "count": "ancestral", "steps": 50},
    "confidence": {"order": "confidence", "count": "fixed", "steps": 50},
    "margin": {"order": "margin", "count": "fixed", "steps": 50},
    "entropy": {"order": "entropy", "count": "fixed", "steps": 50},
    "p2": {"order": "p2", "count": "fixed", "steps": 50},
    "remdm": {"order": "random", "count": "ancestral", "remasker": "remdm_cap", "steps": 50},
    "semi_ar": {"order": "confidence", "count": "fixed", "steps": 50, "block_length": 8},
    # Autoregressive decoding (exact for a causal model): one token per step, T = tokens.
    "left_to_right": {"order": "left_to_right", "count": "fixed", "temperature": 1.0},
}

#: Presets run by a ``Sampler`` subclass (here: steps that follow the requested length).
CLASSES: dict[str, type[Sampler]] = {"left_to_right": LeftToRightSampler}

for _name, _axes in PRESETS.items():
    _factory = functools.partial(CLASSES.get(_name, Sampler), **_axes)
    _factory.__doc__ = "Sampler preset: " + ", ".join(f"{k}={v}" for k, v in _axes.items())
    SAMPLERS.register(_name)(_factory)
