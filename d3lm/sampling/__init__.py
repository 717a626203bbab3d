"""Samplers for masked diffusion: one shared step loop (``loop.Sampler``) composed from
registered axes (orders, counts, remaskers, key/value caches); presets are named axis settings.

Importing this package registers every plugin in ``d3lm.registry``.
"""

from d3lm.sampling import causal, counts, guidance, kvcache, orders, planning, presets, remdm
from d3lm.sampling.base import CommitCount, Remasker, StepContext, UnmaskOrder
from d3lm.sampling.causal import CausalDenoiser, LeftToRightSampler, network_denoiser
from d3lm.sampling.denoiser import Denoiser, KVDenoiser, NetworkDenoiser
from d3lm.sampling.guidance import GuidedDenoiser, guided
from d3lm.sampling.kvcache import KVCache
from d3lm.sampling.loop import RunStats, Sampler, StepEvent
from d3lm.sampling.presets import PRESETS

__all__ = [
    "PRESETS",
    "CausalDenoiser",
    "CommitCount",
    "Denoiser",
    "GuidedDenoiser",
    "KVCache",
    "KVDenoiser",
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
    "guidance",
    "guided",
    "kvcache",
    "network_denoiser",
    "orders",
    "planning",
    "presets",
    "remdm",
]
