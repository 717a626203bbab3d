"""d3lm: masked discrete-diffusion DNA language models."""

__version__ = "0.1.0"
