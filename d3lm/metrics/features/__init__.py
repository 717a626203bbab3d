"""Feature extractors for Fréchet distances, registered in ``FEATURE_EXTRACTORS``.

An extractor maps a batch of DNA strings to a float tensor (n, dim). Importing this package
registers ``kmer``, ``oracle`` and ``sei``.
"""

from d3lm.metrics.features.base import FeatureExtractor, one_hot
from d3lm.metrics.features.kmer import KmerFeatures
from d3lm.metrics.features.oracle import OracleFeatures
from d3lm.metrics.features.sei import Sei, SeiFeatures

__all__ = ["FeatureExtractor", "KmerFeatures", "OracleFeatures", "Sei", "SeiFeatures", "one_hot"]
