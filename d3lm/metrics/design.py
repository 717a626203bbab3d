"""Design metrics: does a class-conditional sample look like the class it was generated for?

A feature space that can also classify (the oracle, trained to tell the DHS cell types apart from
sequence alone) judges every scored set:

- ``share_<space>.<class>``: the fraction of the set it assigns to each class, for every set,
  labelled or not. An unconditional model's shares are the *floor* of a conditional one: the
  rate at which asking for nothing already lands in a class.
- for a set whose records carry the class they were meant to be: ``accuracy_<space>`` (the
  fraction assigned that class) with its binomial interval (``_lo``, ``_hi``: one set's noise),
  ``accuracy_<space>.<class>`` per intended class, the confusion matrix (intended x predicted),
  and ``fd_<space>.<class>`` / ``kid_<space>.<class>``: the samples meant to be one class against
  the reference's real sequences of that class (a model that writes good DNA of the wrong class
  scores well on the whole-set distances but not here).

Held-out real sequences scored with their own labels give the *ceiling*: the oracle's accuracy on
real DNA, which no generator can be expected to beat.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import pandas as pd
import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
)

from d3lm.metrics.frechet import frechet_distance
from d3lm.metrics.kernel import KidSpec, against_reference
from d3lm.metrics.scores import CLASS_SEP
from d3lm.stats import proportion_interval


@runtime_checkable
class Classifier(Protocol):
    """A feature extractor that can also name a class: logits (n, classes) from its features."""

    classes: tuple[str, ...]

    def classify(self, features: torch.Tensor) -> torch.Tensor: ...


def classifiers(extractors: Mapping[str, object]) -> dict[str, Classifier]:
    """The extractors that classify into known classes (the oracle with recorded classes)."""
    return {n: e for n, e in extractors.items() if isinstance(e, Classifier) and e.classes}


def of_class(metric: str, label: str) -> str:
    """The name of ``metric`` computed over class ``label`` alone."""
    return f"{metric}{CLASS_SEP}{label}"


@dataclass(frozen=True)
class Judged:
    """One set's design metrics and, for a labelled set, its confusion matrix (intended x
    predicted counts)."""

    metrics: dict[str, float]
    confusion: pd.DataFrame | None = None


class ClassJudge:
    """Judges sets in one classifying space; the reference's features are split by their true
    class once (none without reference labels: no per-class distances then).

    ``reference_labels`` must all be classes of ``classifier`` (the caller drops a reference
    whose labels are not); so must every intended label of a scored set."""

    def __init__(
        self,
        name: str,
        classifier: Classifier,
        reference: torch.Tensor,
        reference_labels: Sequence[str] | None = None,
        kid: KidSpec | None = None,
        seed: int = 0,
        confidence: float = 0.95,
    ) -> None:
        self.name, self.classifier, self.seed, self.confidence = name, classifier, seed, confidence
        self.kid = kid or KidSpec()
        self.classes = tuple(classifier.classes)
        self.by_class: dict[str, torch.Tensor] = {}
        for label in self.classes if reference_labels is not None else ():
            rows = [i for i, known in enumerate(reference_labels or ()) if known == label]
            if len(rows) >= 2:
                self.by_class[label] = reference[rows]
        self.kernels: dict[str, torch.Tensor] = {}  # per class: reference x reference, once

    def __call__(self, features: torch.Tensor, labels: Sequence[str] | None = None) -> Judged:
        predicted = self.classifier.classify(features).argmax(1)
        k = len(self.classes)
        counts = torch.bincount(predicted, minlength=k).double() / max(len(predicted), 1)
        out = {
            of_class(f"share_{self.name}", c): float(counts[i]) for i, c in enumerate(self.classes)
        }
        if labels is None:
            return Judged(out)
        intended = torch.tensor([self.classes.index(label) for label in labels])
        hits = int((predicted == intended).sum())
        _, low, high = proportion_interval(hits, len(intended), self.confidence)
        out[f"accuracy_{self.name}"] = float(
            multiclass_accuracy(predicted, intended, k, average="micro")
        )
        out |= {f"accuracy_{self.name}_lo": low, f"accuracy_{self.name}_hi": high}
        per_class = multiclass_accuracy(predicted, intended, k, average=None)
        present = torch.bincount(intended, minlength=k)
        for i, label in enumerate(self.classes):
            if present[i]:
                out[of_class(f"accuracy_{self.name}", label)] = float(per_class[i])
            if present[i] >= 2 and label in self.by_class:
                out |= self.distances(label, features[intended == i])
        matrix = multiclass_confusion_matrix(predicted, intended, k).numpy()
        confusion = pd.DataFrame(
            matrix,
            index=pd.Index(self.classes, name="intended"),
            columns=pd.Index(self.classes, name="predicted"),
        )
        return Judged(out, confusion)

    def distances(self, label: str, features: torch.Tensor) -> dict[str, float]:
        """FD and KID of one intended class's samples against the real sequences of the class."""
        ref = self.by_class[label]
        kid, _, _ = against_reference(ref, features, self.kid, self.seed, self.kernels, label)
        return {
            of_class(f"fd_{self.name}", label): frechet_distance(features, ref),
            of_class(f"kid_{self.name}", label): kid,
        }
