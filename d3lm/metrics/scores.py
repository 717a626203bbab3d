"""Every score a result row can hold, declared once: which way is better and how a table names it.

The evaluator computes them (:class:`d3lm.evaluate.Evaluator`; a test keeps this table equal to
what it writes), sweeps check an objective against them and the analysis tables pick best rows,
verdicts and column titles from them, so none of those keeps a list of its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

#: Better is lower, higher, or closer to real DNA's value.
GOAL_NAMES = ("min", "max", "real")
#: Where a score comes from: every evaluated set ("set"), sets scored against training sequences
#: ("train"), a motif scanner ("motifs"), one per feature extractor ("feature": ``fd_<name>``,
#: ``kid_<name>``), a classifying extractor's classes ("classes": ``accuracy_<name>``,
#: ``share_<name>``), the run's validation log ("log"), or the sampler's provenance ("sampler").
SOURCES = ("set", "train", "motifs", "feature", "classes", "log", "sampler")


@dataclass(frozen=True)
class Score:
    goal: str
    title: str
    source: str
    scale: float = 1.0  #: tables print value x scale (the title says so)

    def __post_init__(self) -> None:
        if self.goal not in GOAL_NAMES or self.source not in SOURCES:
            raise ValueError(f"goal {self.goal!r}, source {self.source!r}: see GOAL_NAMES, SOURCES")


SCORES: dict[str, Score] = {
    "val_bpn": Score("min", "val bits/nt", "log"),
    "gc_content": Score("real", "GC", "set"),
    "gc_ratio_gc_at": Score("real", "GC ratio (G+C)/(A+T)", "set"),
    "gc_ratio_g_c": Score("real", "G/C", "set"),
    "cpg_oe": Score("real", "CpG o/e", "set"),
    **{f"js_k{k}": Score("min", f"JS {k}-mer", "set") for k in range(1, 7)},
    "fraction_unique": Score("max", "unique", "set"),
    "mean_hamming": Score("real", "diversity (Hamming)", "set"),
    "mean_edit": Score("real", "diversity (edit)", "set"),
    "nearest_mean": Score("real", "novelty (nearest train)", "train"),
    "nearest_median": Score("real", "novelty (median nearest train)", "train"),
    "fraction_copies": Score("min", "train copies", "train"),
    "motif_corr": Score("max", "motif rate correlation", "motifs"),
    "motif_js": Score("min", "motif rate JS", "motifs"),
    "nfe": Score("min", "network calls / sequence", "sampler"),
    "sample_s_per_1000": Score("min", "s / 1,000 sequences", "sampler"),
}

#: How titles name a feature space (default: its registered name).
FEATURE_TITLES = {"kmer": "k-mer"}
#: Feature scores with a name of their own in the literature.
NAMED = {"fd_sei": "SFID"}


#: Joins a score to the one class it was computed over: ``kid_oracle.K562`` is ``kid_oracle`` of
#: the samples meant to be K562 against the real K562 sequences (:mod:`d3lm.metrics.design`).
CLASS_SEP = "."


#: The per-feature scores, titled with the feature space's name.
FEATURE_KINDS = {
    "fd": Score("min", "FD {space}", "feature"),
    "kid": Score("min", "KID {space} ×10³", "feature", scale=1e3),
    "accuracy": Score("max", "{space} accuracy (intended class)", "classes"),
    "share": Score("real", "{space} class share", "classes"),
}


def feature_score(name: str) -> Score | None:
    """``fd_<feature>`` and ``kid_<feature>`` (lower is better; KID printed x 10^3),
    ``accuracy_<feature>`` (the classifier's rate of assigning the intended class) and
    ``share_<feature>`` (its rate of assigning one class: closest to real DNA's is best), else
    None."""
    kind, _, feature = name.partition("_")
    if kind not in FEATURE_KINDS or not feature or feature.endswith(("_std", "_lo", "_hi")):
        return None
    space = FEATURE_TITLES.get(feature, feature)
    declared = FEATURE_KINDS[kind]
    return replace(declared, title=NAMED.get(name, declared.title.format(space=space)))


def score(name: str) -> Score | None:
    """The declaration of score ``name``, or None for a name that is not a score; a score over
    one class (``<score>.<class>``) is its score's, titled with the class."""
    base, sep, label = name.partition(CLASS_SEP)
    declared = SCORES.get(base) or feature_score(base)
    if not sep:
        return declared
    return replace(declared, title=f"{declared.title} {label}") if declared and label else None


def names(*sources: str) -> tuple[str, ...]:
    """The declared scores (not the per-feature ones) from ``sources``, in table order."""
    return tuple(n for n, s in SCORES.items() if s.source in sources)


class ScoreField(Mapping[str, Any]):
    """One field of every score by name (``ScoreField("goal")["fd_kmer"] == "min"``), the
    per-feature ones included; a name that is not a score is missing."""

    def __init__(self, field: str) -> None:
        self.field = field

    def __getitem__(self, name: str) -> Any:
        declared = score(name)
        if declared is None:
            raise KeyError(name)
        return getattr(declared, self.field)

    def __iter__(self) -> Iterator[str]:
        return iter(SCORES)

    def __len__(self) -> int:
        return len(SCORES)
