"""Noise schedules and training objectives; importing this registers their plugins."""

from d3lm.diffusion.objectives import MaskedDiffusion
from d3lm.diffusion.schedules import Cosine, Linear, LogLinear, NoiseSchedule, Polynomial

__all__ = ["Cosine", "Linear", "LogLinear", "MaskedDiffusion", "NoiseSchedule", "Polynomial"]
