"""Evaluation of generated sequences against real ones: the functions behind ``d3lm evaluate``.

Every generation table carries, besides the generated set, a **real** row (held-out real
sequences: the floor every distance should approach, the paper's "real DNA 7.85") and the
baseline rows of :mod:`d3lm.baselines`. To keep those rows comparable the reference is split once,
by seed, into two disjoint halves: the first half is what every set is compared with; the real row
is drawn from the second half, with as many sequences as the generated set (Fréchet distances
depend on sample size).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf
from tqdm import tqdm

import d3lm.baselines  # noqa: F401  (registers the baseline generators)
from d3lm.config import load_config
from d3lm.errors import D3lmError
from d3lm.io import write_text
from d3lm.metrics.composition import (
    composition,
    encode_concatenated,
    js_divergence,
    kmer_counts_codes,
)
from d3lm.metrics.design import ClassJudge, Judged, classifiers
from d3lm.metrics.diversity import diversity
from d3lm.metrics.features import FeatureExtractor, OracleFeatures
from d3lm.metrics.frechet import frechet_distance
from d3lm.metrics.intervals import Bootstrap, kid_interval
from d3lm.metrics.kernel import KidSpec, against_reference
from d3lm.metrics.motifs import MotifScanner, compare_rates
from d3lm.metrics.novelty import novelty
from d3lm.oracle.datasets import with_checkpoint
from d3lm.registry import FEATURE_EXTRACTORS, GENERATORS


def plugins_of(e: Any, key: str) -> dict[str, dict[str, Any]]:
    """An ``evaluate`` section's ``<key>`` (features or baselines) with their params."""
    params = OmegaConf.to_container(e.params, resolve=True)
    assert isinstance(params, dict)
    return {name: dict(params.get(name, {})) for name in e[key]}


def base_plugins(key: str) -> dict[str, dict[str, Any]]:
    """base.yaml's: the one place the evaluation's defaults are written."""
    return plugins_of(load_config().evaluate, key)


class Evaluator:
    """Scores sequence sets against one reference set; reference-side work is done once.

    Metrics (keys of :meth:`score`): per feature extractor ``fd_<extractor>``, ``kid_<extractor>``
    and ``kid_<extractor>_std`` (over subsets), and for those in ``intervals.features`` the
    within-set bootstrap interval ``kid_<extractor>_lo`` / ``_hi``; ``gc_content``,
    ``gc_ratio_gc_at``, ``gc_ratio_g_c``, ``cpg_oe``; ``js_k1..js_k6`` (k-mer spectrum JS vs the
    reference); ``fraction_unique``, ``mean_hamming``, ``mean_edit``; ``nearest_mean``,
    ``nearest_median``, ``fraction_copies`` (vs ``train``, when given); ``motif_corr``,
    ``motif_js`` (when a motif scanner is given); per classifying extractor (the oracle) the
    design metrics of :mod:`d3lm.metrics.design` (``share_<extractor>.<class>``; for a set
    scored with its intended labels also ``accuracy_<extractor>`` and, given
    ``reference_labels``, the per-class distances). ``progress`` shows a per-batch bar while
    features are extracted (batches of the extractor's own ``batch_size``, so the features are
    the same as in one call).
    """

    def __init__(
        self,
        reference: Sequence[str],
        extractors: Mapping[str, FeatureExtractor],
        train: Sequence[str] | None = None,
        motifs: MotifScanner | None = None,
        ks: Sequence[int] = (1, 2, 3, 4, 5, 6),
        seed: int = 0,
        progress: bool = False,
        kid: KidSpec | None = None,
        intervals: Bootstrap | None = None,
        reference_labels: Sequence[str] | None = None,
    ) -> None:
        self.extractors, self.train, self.motifs, self.seed = extractors, train, motifs, seed
        self.progress = progress
        self.kid, self.intervals = kid or KidSpec(), intervals or Bootstrap()
        self.features = {name: self.extract(name, reference) for name in extractors}
        self.judges = {
            name: ClassJudge(
                name,
                classifier,
                self.features[name],
                reference_labels,
                self.kid,
                seed,
                self.intervals.confidence,
            )
            for name, classifier in classifiers(extractors).items()
        }
        self.kernels: dict[str, torch.Tensor] = {}  # reference x reference, once per extractor
        codes = encode_concatenated(reference)
        self.spectra = {k: kmer_counts_codes(codes, k) for k in ks}
        self.motif_rates = motifs.rates(reference) if motifs is not None else None

    def extract(self, name: str, seqs: Sequence[str]) -> torch.Tensor:
        """Features of ``seqs`` from extractor ``name``, batch by batch behind a bar."""
        extractor = self.extractors[name]
        size = getattr(extractor, "batch_size", None) or max(len(seqs), 1)
        starts = range(0, len(seqs), size)
        bar = tqdm(
            starts, f"{name} features", unit="batch", leave=False, disable=_quiet(self.progress)
        )
        chunks = [extractor(seqs[i : i + size]) for i in bar]
        return torch.cat(chunks) if chunks else extractor(seqs)

    def score(self, seqs: Sequence[str]) -> dict[str, float]:
        return self.judge(seqs).metrics

    def judge(self, seqs: Sequence[str], labels: Sequence[str] | None = None) -> Judged:
        """Every metric of ``seqs`` (meant to be of classes ``labels``, when given), with the
        confusion matrices of a labelled set (rows: classifying extractor, intended class)."""
        out: dict[str, float] = {}
        confusions: dict[str, pd.DataFrame] = {}
        for name in self.extractors:
            features = self.extract(name, seqs)
            out.update(self.distances(name, features))
            if name in self.judges:
                judged = self.judges[name](features, labels)
                out.update(judged.metrics)
                if judged.confusion is not None:
                    confusions[name] = judged.confusion
        out.update(composition(seqs))
        codes = encode_concatenated(seqs)
        for k, ref in self.spectra.items():
            out[f"js_k{k}"] = js_divergence(kmer_counts_codes(codes, k), ref)
        out.update(diversity(seqs, seed=self.seed))
        if self.train is not None:
            out.update(novelty(seqs, self.train))
        if self.motifs is not None and self.motif_rates is not None:
            out.update(compare_rates(self.motif_rates, self.motifs.rates(seqs)))
        return Judged(out, pd.concat(confusions, names=["space"]) if confusions else None)

    def distances(self, name: str, features: torch.Tensor) -> dict[str, float]:
        """FD and KID of one set's features against the reference's in space ``name``."""
        ref = self.features[name]
        kid, kid_std, kernels = against_reference(
            ref, features, self.kid, self.seed, self.kernels, name
        )
        out = {f"fd_{name}": frechet_distance(features, ref), f"kid_{name}": kid}
        out[f"kid_{name}_std"] = kid_std
        if name in self.intervals.features:
            low, high = kid_interval(kernels, self.intervals, kid, self.seed)
            out[f"kid_{name}_lo"], out[f"kid_{name}_hi"] = low, high
        return out


def split_reference(
    reference: Sequence[str], n_real: int, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Disjoint halves: (reference half, up to ``n_real`` held-out real sequences)."""
    ref_half, real = split_indices(len(reference), n_real, seed)
    return [reference[i] for i in ref_half], [reference[i] for i in real]


def split_indices(size: int, n_real: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The positions of :func:`split_reference`'s halves, to split labels the same way."""
    order = np.random.default_rng(seed).permutation(size)
    half = size // 2
    if half < 2:
        raise D3lmError(f"the reference needs at least 4 sequences, got {size}")
    return order[:half], order[half:][:n_real]


def baseline_sets(
    baselines: Mapping[str, Mapping[str, Any]],
    pools: Mapping[str, Sequence[str]],
    n: int,
    length: int,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Draw ``n`` x ``length`` bp from each named baseline, fitted on ``pools[generator.fit_on]``
    (``pools`` has ``"train"`` and ``"real"``)."""
    out = {}
    for name, params in baselines.items():
        generator = GENERATORS.build(name, params)
        out[name] = generator.fit(pools[generator.fit_on]).sample(n, length, seed)
    return out


def build_extractors(
    specs: Mapping[str, Mapping[str, Any]], cache_dir: Path
) -> dict[str, FeatureExtractor]:
    """Extractors by registry name. An oracle without a ``checkpoint`` gets the weights of its
    ``dataset`` recipe (:func:`~d3lm.oracle.datasets.with_checkpoint`: the shipped oracle, or one
    trained once under ``cache_dir``)."""
    out = {}
    for name, params in specs.items():
        if FEATURE_EXTRACTORS.get(name) is OracleFeatures:
            params = with_checkpoint(params, cache_dir)
        out[name] = FEATURE_EXTRACTORS.build(name, params)
    return out


def provenance(extractors: Mapping[str, FeatureExtractor]) -> dict[str, Any]:
    """What identifies the instrument of a score: the extractors' ``provenance`` merged (the
    oracle's checksum and test accuracy; empty for extractors that need none)."""
    out: dict[str, Any] = {}
    for extractor in extractors.values():
        out.update(getattr(extractor, "provenance", {}))
    return out


def tidy(scores: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """Rows (run, metric, value) from {run: {metric: value}}."""
    rows = [(run, m, v) for run, metrics in scores.items() for m, v in metrics.items()]
    return pd.DataFrame(rows, columns=["run", "metric", "value"])


@dataclass
class EvaluateOptions:
    """What ``d3lm evaluate`` computes besides the samples row."""

    features: dict[str, dict[str, Any]] = field(default_factory=lambda: base_plugins("features"))
    baselines: dict[str, dict[str, Any]] = field(default_factory=lambda: base_plugins("baselines"))
    split: str = "test"
    train_split: str | None = None  #: None: the ``train`` split, when the reference has one
    motifs: bool = True
    seed: int = 0
    progress: bool = True  #: bars on stderr (only when it is a terminal)
    allow_lengths: bool = False  #: score samples whose lengths differ from the reference's
    kid: KidSpec = field(default_factory=KidSpec)
    intervals: Bootstrap = field(default_factory=Bootstrap)

    @classmethod
    def from_config(cls, e: Any, seed: int) -> EvaluateOptions:
        """The options of a run's ``evaluate`` config section (``seed``: the run's)."""
        return cls(
            features=plugins_of(e, "features"),
            baselines=plugins_of(e, "baselines"),
            split=e.split,
            motifs=e.motifs,
            seed=seed,
            progress=e.progress,
            kid=KidSpec(**e.kid),
            intervals=Bootstrap(
                features=tuple(e.intervals.features),
                resamples=e.intervals.resamples,
                confidence=e.intervals.confidence,
            ),
        )


def _quiet(progress: bool) -> bool | None:
    """tqdm's ``disable``: off when asked, else None = off unless stderr is a terminal."""
    return None if progress else True


def evaluate_samples(
    samples: Sequence[str],
    reference: Sequence[str],
    train: Sequence[str] | None,
    extractors: Mapping[str, FeatureExtractor],
    options: EvaluateOptions,
    motifs: MotifScanner | None = None,
    run: str = "samples",
    labels: Sequence[str] | None = None,
    reference_labels: Sequence[str] | None = None,
    confusion: Path | None = None,
) -> pd.DataFrame:
    """Tidy rows for the samples, the real-vs-real row and every baseline row.

    ``labels``: the class each sample was generated for (conditional samples; checked against
    the classifying extractors by the caller, who knows the file and records). With
    ``reference_labels`` whose classes the classifying extractors all know, the held-out real
    row is scored with its own labels (the oracle's ceiling) and per-class distances compare
    each class with the reference's sequences of that class. ``confusion``: where, for labelled
    samples, the labelled sets' confusion matrices go (a CSV: set, space, intended, one column
    per predicted class)."""
    if not samples:
        raise D3lmError("no samples to evaluate")
    length = int(pd.Series([len(s) for s in samples]).mode().iloc[0])
    if not options.allow_lengths:
        check_reference_length(length, reference)
    half, held_out = split_indices(len(reference), len(samples), options.seed)
    ref_half, real = [reference[i] for i in half], [reference[i] for i in held_out]
    known = [set(c.classes) for c in classifiers(extractors).values()]
    if reference_labels is None or not known or not all(set(reference_labels) <= k for k in known):
        reference_labels = None  # nothing judges these labels (or none were given)
    stages = tqdm(
        total=3 + len(options.baselines),  # reference features, then one per scored set
        desc="evaluate",
        unit="stage",
        disable=_quiet(options.progress),
    )
    stages.set_postfix_str("reference")
    evaluator = Evaluator(
        ref_half,
        extractors,
        train,
        motifs,
        seed=options.seed,
        progress=options.progress,
        kid=options.kid,
        intervals=options.intervals,
        reference_labels=None if reference_labels is None else [reference_labels[i] for i in half],
    )
    stages.update()
    pools = {"train": train or real, "real": real}
    sets = {run: list(samples), "real": real}
    intended = {run: labels}
    if reference_labels is not None:
        intended["real"] = [reference_labels[i] for i in held_out]
    stages.set_postfix_str("baselines")
    sets |= baseline_sets(options.baselines, pools, len(samples), length, options.seed)
    scores, confusions = {}, {}
    for name, seqs in sets.items():
        stages.set_postfix_str(name)
        judged = evaluator.judge(seqs, intended.get(name))
        scores[name] = judged.metrics
        if judged.confusion is not None:
            confusions[name] = judged.confusion
        stages.update()
    stages.close()
    if confusion is not None and labels is not None and confusions:
        table = pd.concat(confusions, names=["set"])
        write_text(confusion, table.to_csv())
    return tidy(scores)


def write_metrics(rows: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """``metrics.json`` = {run: {metric: value}}, written atomically."""
    nested: dict[str, dict[str, float]] = {}
    for run, metric, value in rows.itertuples(index=False):
        nested.setdefault(run, {})[metric] = float(value)
    write_text(path, json.dumps(nested, indent=2, sort_keys=True) + "\n")


def check_reference_length(length: int, reference: Sequence[str]) -> None:
    """Samples of ``length`` bp against a reference of one other length are refused: oracle
    (max-pooled) and Sei (fixed window) features only compare sets of one length."""
    ref_lengths = {len(s) for s in reference}
    if len(ref_lengths) == 1 and length not in ref_lengths:
        raise D3lmError(
            f"the samples are {length} bp but every reference sequence is "
            f"{ref_lengths.pop()} bp: evaluate against a {length}-bp reference "
            "(recipes: promoters 2,048 bp, dhs 200 bp) or pass --allow-lengths"
        )
