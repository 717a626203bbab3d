"""The NT v2 network and its heads; importing this registers the backbone presets, poolings
and classification heads."""

from d3lm.model.backbone import PRESETS, BackboneConfig, NTv2Encoder
from d3lm.model.classify import CLASSIFIER_HEADS, POOLINGS
from d3lm.model.heads import LMHead
from d3lm.model.size import count_parameters

__all__ = [
    "CLASSIFIER_HEADS",
    "POOLINGS",
    "PRESETS",
    "BackboneConfig",
    "LMHead",
    "NTv2Encoder",
    "count_parameters",
]
