"""The NT v2 network and its heads; importing this registers the backbone presets."""

from d3lm.model.backbone import PRESETS, BackboneConfig, NTv2Encoder, count_parameters
from d3lm.model.heads import LMHead

__all__ = ["PRESETS", "BackboneConfig", "LMHead", "NTv2Encoder", "count_parameters"]
