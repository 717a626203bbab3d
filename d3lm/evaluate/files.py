"""``d3lm evaluate`` on files: a samples FASTA (labelled or not) against a recipe or a table."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from d3lm.data.samples import LABEL_FIELD, Samples, read_samples
from d3lm.data.tables import load_table
from d3lm.errors import D3lmError
from d3lm.evaluate.evaluator import (
    EvaluateOptions,
    build_extractors,
    check_reference_length,
    evaluate_samples,
    write_metrics,
)
from d3lm.io import check_writable, write_text
from d3lm.metrics.design import classifiers
from d3lm.metrics.features import FeatureExtractor
from d3lm.metrics.motifs import MotifScanner
from d3lm.rundir import CONFUSION, METRICS


def evaluate_fasta(
    samples: Path,
    reference: str,
    out_dir: Path,
    cache_dir: Path,
    options: EvaluateOptions | None = None,
) -> pd.DataFrame:
    """``d3lm evaluate``: score a samples FASTA against a recipe name or a sequence file.

    The reference is the ``options.split`` split of ``reference``; novelty and the Markov
    baseline use its ``options.train_split`` split (by default ``train``; when it has none, they
    use the held-out real half; a split named but absent is refused). Writes ``metrics.json`` and
    ``metrics.csv`` (tidy rows), and for labelled samples ``confusion.csv``, into ``out_dir``,
    which is created only then: a failed run leaves nothing behind. A ``label`` column of the
    reference gives the per-class rows (:func:`evaluate_samples`).
    """
    options = options or EvaluateOptions()
    check_writable(Path(out_dir) / METRICS, keep_folders=False)
    read = read_samples(samples, options.allow_lengths)
    seqs = read.sequences
    table = load_table(reference, cache_dir)
    ref = table.loc[table["split"] == options.split, "sequence"].tolist()
    if not ref:
        splits = ", ".join(sorted(table["split"].unique()))
        raise D3lmError(f"{reference}: no sequences in split {options.split!r} (splits: {splits})")
    if not options.allow_lengths:
        check_reference_length(len(seqs[0]), ref)  # before the feature extractors load
    splits = sorted(table["split"].unique())
    if options.train_split is not None and options.train_split not in splits:
        raise D3lmError(
            f"{reference}: no split {options.train_split!r} for --train-split "
            f"(splits: {', '.join(splits)})"
        )
    train_split = options.train_split or "train"
    train = table.loc[table["split"] == train_split, "sequence"].tolist() or None
    extractors = build_extractors(options.features, cache_dir)
    check_labels(read, extractors)
    rows = evaluate_samples(
        seqs,
        ref,
        train,
        extractors,
        options,
        MotifScanner() if options.motifs else None,
        run=Path(samples).stem,
        labels=read.intended,
        reference_labels=labels_of(table, options.split),
        confusion=Path(out_dir) / CONFUSION,
    )
    write_metrics(rows, Path(out_dir) / METRICS)
    write_text(Path(out_dir) / "metrics.csv", rows.to_csv(index=False))
    return rows


def check_labels(samples: Samples, extractors: Mapping[str, FeatureExtractor]) -> None:
    """Labelled samples name only classes every classifying extractor knows."""
    for name, classifier in classifiers(extractors).items():
        samples.check_classes(classifier.classes, f"{name!r} feature extractor")


def labels_of(table: pd.DataFrame, split: str) -> list[str] | None:
    """The ``label`` column of ``split``'s records (the column is named like the samples'
    header field), None when the table has none."""
    if LABEL_FIELD not in table.columns:
        return None
    return table.loc[table["split"] == split, LABEL_FIELD].astype(str).tolist()


def metric_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Runs as rows, metrics as columns, in the order the rows came."""
    table = rows.pivot(index="run", columns="metric", values="value")
    return table.loc[rows["run"].unique(), rows["metric"].unique()]
