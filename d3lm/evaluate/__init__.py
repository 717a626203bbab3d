"""Evaluation of generated sequences against real ones: the functions behind ``d3lm evaluate``
(:mod:`.evaluator`: the scores of sequence sets; :mod:`.files`: a samples file against a
recipe or a table)."""

from d3lm.evaluate.evaluator import (
    EvaluateOptions,
    Evaluator,
    baseline_sets,
    build_extractors,
    evaluate_samples,
    provenance,
    split_indices,
    split_reference,
    tidy,
    write_metrics,
)
from d3lm.evaluate.files import check_labels, evaluate_fasta, labels_of, metric_table

__all__ = [
    "EvaluateOptions",
    "Evaluator",
    "baseline_sets",
    "build_extractors",
    "check_labels",
    "evaluate_fasta",
    "evaluate_samples",
    "labels_of",
    "metric_table",
    "provenance",
    "split_indices",
    "split_reference",
    "tidy",
    "write_metrics",
]
