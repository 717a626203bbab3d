"""What a sample job conditions on: each sequence's class label and the guidance weight.

Labels are a pure function of ``sample.labels`` and ``sample.n`` (sequence index -> label), so
sampling workers, each with a slice of the indices, agree with one process. A conditional
model's label enters as its condition token at position 0 (:mod:`d3lm.conditioning`), known to
the sampler under the conditioning's widened layout; ``sample.guidance`` > 0 wraps the
denoiser in classifier-free guidance (:mod:`d3lm.sampling.guidance`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from d3lm.conditioning import NoConditioning
from d3lm.conditioning.base import POSITION
from d3lm.config import plain
from d3lm.errors import D3lmError
from d3lm.sampling import Denoiser, guided

#: ``sample.labels: [all]``: an equal share for every class of the model, in class order.
ALL = "all"


def conditioning_of(model: Any) -> Any:
    """The model's conditioning plugin; a model from before conditioning existed has none."""
    return getattr(model, "conditioning", None) or NoConditioning()


def label_names(value: Any) -> list[str]:
    """``sample.labels`` as a list of names: null -> [], one name -> [name]."""
    value = plain(value)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str | int) for v in value):
        return [str(v) for v in value]
    raise D3lmError(f"sample.labels={value!r}: expected null, class names or [{ALL}]")


def sequence_labels(labels: Sequence[str], n: int, classes: Sequence[str]) -> list[str | None]:
    """The label of each of ``n`` sequences: equal contiguous shares for the listed ``labels``
    in order (a name listed twice gets two shares; ``[all]``: ``classes``), the remainder one
    each to the first; no labels: None (the null token) for every sequence."""
    names = list(classes) if list(labels) == [ALL] else list(labels)
    if not names:
        return [None] * n
    size, extra = divmod(n, len(names))
    return [name for i, name in enumerate(names) for _ in range(size + (i < extra))]


def header(name: str, label: str | None) -> str:
    """A FASTA header: ``name label=X`` for a labelled sequence (as labelled FASTA files are
    read: :func:`d3lm.data.fasta.read_fasta_described`), ``name`` alone for an unlabelled one."""
    return name if label is None else f"{name} label={label}"


@dataclass(frozen=True)
class Condition:
    """A sample job's ``labels`` (one per global sequence index) under ``conditioning``, guided
    with weight ``guidance``. An unconditional model samples as it always did."""

    conditioning: Any
    labels: tuple[str | None, ...]
    guidance: float

    @classmethod
    def of(cls, model: Any, labels: Any, guidance: float, n: int, where: str) -> Condition:
        """``sample.labels`` and ``sample.guidance`` for ``model``; an error naming ``where``
        (the run) for labels or guidance on an unconditional model, an unknown label (naming
        the model's classes), ``all`` among other names, or guidance without labels."""
        conditioning, names = conditioning_of(model), label_names(labels)
        if not conditioning.n_tokens and (names or guidance):
            raise D3lmError(
                f"{where}: --label (sample.labels) and sample.guidance need a conditional "
                "model; this run was trained with conditioning: none"
            )
        if ALL in names and names != [ALL]:
            raise D3lmError(f"sample.labels={names}: {ALL!r} stands alone (every class)")
        if guidance and not names:
            raise D3lmError(
                f"sample.guidance={guidance}: guidance steers towards a label; give --label "
                f"NAME or --label {ALL}"
            )
        for name in names:
            if name != ALL:
                conditioning.class_id(name)  # an unknown one: an error naming the classes
        shares = sequence_labels(names, n, conditioning.classes)
        return cls(conditioning, tuple(shares), float(guidance))

    @property
    def conditional(self) -> bool:
        return bool(self.conditioning.n_tokens)

    def prompt(self, part: range, layout: Tensor, mask_id: int) -> tuple[Tensor, Tensor, Tensor]:
        """Ids, known positions and layout for ``Sampler.infill`` of the sequences ``part``:
        all masked but the condition token (under the widened layout) of a conditional model."""
        ids = torch.full((len(part), layout.shape[0]), mask_id, device=layout.device)
        known = torch.zeros_like(ids, dtype=torch.bool)
        if not self.conditional:
            return ids, known, layout
        labels = self.labels[part.start : part.stop]
        ids = self.conditioning.encode(ids, labels, [str(i) for i in part])
        known[:, POSITION] = True
        return ids, known, self.conditioning.layout(layout)

    @property
    def passes(self) -> int:
        """Network passes per sampler call of a sequence: 2 when guided (conditional and null)."""
        return 2 if self.conditional and self.guidance else 1

    def denoiser(self, den: Denoiser) -> Denoiser:
        """``den`` guided towards each row's label (weight 0: ``den`` itself)."""
        if not self.conditional:
            return den
        return guided(den, self.guidance, self.conditioning.null_id, POSITION)

    def strip(self, ids: Tensor, cls_id: int) -> Tensor:
        """Sampled ids with the condition tokens back to ``<cls>``, for decoding."""
        return self.conditioning.strip(ids, cls_id) if self.conditional else ids

    def provenance(self) -> dict[str, Any]:
        """How many sequences of each label (None: unlabelled) and the guidance weight."""
        counts: dict[str, int] = {}
        for label in self.labels:
            if label is not None:
                counts[label] = counts.get(label, 0) + 1
        return {"labels": counts or None, "guidance": self.guidance}
