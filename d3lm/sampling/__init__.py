"""Samplers for masked diffusion: one shared step loop (``loop.Sampler``) composed from
registered axes (orders, counts, remaskers); presets are named axis settings.

Importing this package registers every plugin in ``d3lm.registry``.
"""

from d3lm.sampling import causal, counts, orders, planning, presets, remdm
from d3lm.sampling.base import CommitCount, Remasker, StepContext, UnmaskOrder
from d3lm.sampling.causal import CausalDenoiser, LeftToRightSampler, network_denoiser
from d3lm.sampling.denoiser import Denoiser, NetworkDenoiser
from d3lm.sampling.loop import RunStats, Sampler, StepEvent
from d3lm.sampling.presets import PRESETS

__all__ = [
    "PRESETS",
    "CausalDenoiser",
    "CommitCount",
    "Denoiser",
    "LeftToRightSampler",
    "NetworkDenoiser",
    "Remasker",
    "RunStats",
    "Sampler",
    "StepContext",
    "StepEvent",
    "UnmaskOrder",
    "causal",
    "counts",
    "network_denoiser",
    "orders",
    "planning",
    "presets",
    "remdm",
]
