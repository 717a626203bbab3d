"""Conditioning plugins (``conditioning.name``): what label, if any, a diffusion LM is trained
and sampled with. Importing this package registers the built-in ones."""

from d3lm.conditioning.base import Conditioning, LabelConditioning, NoConditioning

__all__ = ["Conditioning", "LabelConditioning", "NoConditioning"]
