"""Generation metrics: composition, Fréchet distances over pluggable feature spaces, diversity,
novelty and motifs. Importing the package registers every feature extractor."""

from d3lm.metrics.composition import (
    Composition,
    KmerSpectrum,
    composition,
    composition_table,
    cpg_oe,
    gc_content,
    gc_ratio,
    js_divergence,
    kmer_spectrum,
)
from d3lm.metrics.diversity import diversity
from d3lm.metrics.features import FeatureExtractor, KmerFeatures, OracleFeatures, SeiFeatures
from d3lm.metrics.frechet import FrechetDistance, frechet_distance, frechet_from_moments
from d3lm.metrics.motifs import MotifScanner, compare_rates
from d3lm.metrics.novelty import novelty

__all__ = [
    "Composition",
    "FeatureExtractor",
    "FrechetDistance",
    "KmerFeatures",
    "KmerSpectrum",
    "MotifScanner",
    "OracleFeatures",
    "SeiFeatures",
    "compare_rates",
    "composition",
    "composition_table",
    "cpg_oe",
    "diversity",
    "frechet_distance",
    "frechet_from_moments",
    "gc_content",
    "gc_ratio",
    "js_divergence",
    "kmer_spectrum",
    "novelty",
]
