"""A samples FASTA read for scoring: its sequences and, for conditional samples, the class each
was generated for (``label=<class>`` in its header, as the sample stage writes it). Every
refusal names the file and the record."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from d3lm.data.fasta import read_fasta_described
from d3lm.errors import D3lmError

#: The header field that holds a record's intended class: ``>{experiment}/{run}/{i} label=K562``.
LABEL_FIELD = "label"

_NOT_ACGT = re.compile(r"[^ACGT]")


@dataclass(frozen=True)
class Samples:
    """One samples file: record names, sequences and intended labels (None: no ``label``
    field, an unconditional sample; a file is all labelled or all not)."""

    path: Path
    names: list[str]
    sequences: list[str]
    labels: list[str | None]

    @property
    def intended(self) -> list[str] | None:
        """The intended classes, or None for unconditional samples."""
        if any(label is None for label in self.labels):
            return None
        return [str(label) for label in self.labels]

    def check_classes(self, classes: Sequence[str], judge: str) -> None:
        """Every intended label is one of ``classes`` (those ``judge`` tells apart); else an
        error naming the first record whose label is not."""
        known = set(classes)
        for name, label in zip(self.names, self.labels, strict=True):
            if label is not None and label not in known:
                raise D3lmError(
                    f"{self.path}: record {name!r}: label {label!r} is not a class the {judge} "
                    f"knows (classes: {', '.join(classes)}); its accuracy cannot be scored"
                )


def read_samples(path: str | os.PathLike[str], allow_lengths: bool = False) -> Samples:
    """The records of a samples file and their labels (:func:`read_labelled`), its sequences
    checked (:func:`check_samples`)."""
    samples = read_labelled(path)
    records = list(zip(samples.names, samples.sequences, strict=True))
    check_samples(samples.path, records, allow_lengths)
    return samples


def read_labelled(path: str | os.PathLike[str]) -> Samples:
    """The records of a samples file with their ``label=`` fields; a file that mixes labelled
    and unlabelled records is refused, naming one of each."""
    path = Path(path)
    records = list(read_fasta_described(path))
    names = [name for name, _, _ in records]
    labels = [label_of(path, name, description) for name, description, _ in records]
    labelled = [label is not None for label in labels]
    if any(labelled) and not all(labelled):
        other = labelled.index(not labelled[0])
        state = {True: f"has a {LABEL_FIELD}= field", False: f"has no {LABEL_FIELD}= field"}
        raise D3lmError(
            f"{path}: record {names[0]!r} {state[labelled[0]]}, record {names[other]!r} "
            f"{state[labelled[other]]}: a file is scored either as conditional samples (every "
            "record labelled) or as unconditional ones"
        )
    return Samples(path, names, [seq for _, _, seq in records], labels)


def label_of(path: Path, name: str, description: str) -> str | None:
    """The ``label=`` field of a header's description, None when there is none."""
    values = [f.partition("=")[2] for f in description.split() if f.startswith(f"{LABEL_FIELD}=")]
    if len(values) > 1 or (values and not values[0]):
        raise D3lmError(
            f"{path}: record {name!r}: expected one non-empty {LABEL_FIELD}= field, "
            f"got {description!r}"
        )
    return values[0] if values else None


def check_samples(
    path: Path, records: Sequence[tuple[str, str]], allow_lengths: bool = False
) -> list[str]:
    """The sequences of a samples file, refused (naming the file and record) when empty, when a
    record holds anything but ACGT, or when lengths differ (unless ``allow_lengths``): every
    metric here compares sets of one length, and an N or a stray character would be scored as
    if it were DNA."""
    if not records:
        raise D3lmError(f"{path}: no sequences to evaluate")
    for name, seq in records:
        bad = _NOT_ACGT.search(seq)
        if bad:
            raise D3lmError(
                f"{path}: record {name!r}: {bad.group()!r} at position {bad.start() + 1} is not "
                "A, C, G or T"
            )
    lengths = {len(seq) for _, seq in records}
    if len(lengths) > 1 and not allow_lengths:
        name, seq = next((n, s) for n, s in records if len(s) != len(records[0][1]))
        raise D3lmError(
            f"{path}: record {name!r} is {len(seq)} bp, record {records[0][0]!r} "
            f"{len(records[0][1])} bp; samples of several lengths are only scored with "
            "--allow-lengths"
        )
    return [seq for _, seq in records]
