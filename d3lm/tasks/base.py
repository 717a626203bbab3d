"""Labelled tasks: what a classifier is fine-tuned and scored on.

A task is a registered builder (``TASKS``, cached like a dataset recipe under
``cache_dir/tasks/<name>[-params]/``) or a user's file. Either way it comes out as a
:class:`LabelledTable` whose labels were checked against the task's classes: a missing label, one
outside the classes, a class seen in valid/test but never in train, or an empty train split is a
:class:`D3lmError` naming the file and the record.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from d3lm.data.recipes import cache_key, non_default_params, write_once
from d3lm.errors import D3lmError, NotFound
from d3lm.registry import TASKS
from d3lm.tasks.user import labels_as_text, read_user_table, record

#: A classifier's scores of every split, by their logged names (``val/mcc``, ``test/f1``, ...);
#: a task's primary metric is one of them.
METRICS = ("mcc", "f1", "accuracy")
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class TaskInfo:
    """A task's metadata; class id = index in ``classes``."""

    name: str  # registry name, or the file path for a user table
    classes: tuple[str, ...]
    length: int | None  # bp of every sequence; None: lengths vary
    metric: str = "mcc"  # primary metric: mcc | f1 | accuracy
    description: str = ""

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(
                f"task {self.name}: metric must be one of {METRICS}, got {self.metric!r}"
            )


@dataclass(frozen=True)
class LabelledTable:
    """``frame``: ``name, sequence, label, y, split`` (genomic tasks also ``chrom, start, end,
    strand``); ``source``: the parquet or user file the rows came from; ``notes``: what was done
    to the source's splits (a validation split carved from train), for the run's log and
    metadata."""

    info: TaskInfo
    frame: pd.DataFrame
    source: Path
    notes: tuple[str, ...] = ()


class Task(ABC):
    """A registered task: ``prepare`` builds its parquet once (with ``source.json`` provenance)
    into ``cache_dir/tasks/<folder>/``; ``info`` is the class's, with the instance's length."""

    name: ClassVar[str]
    info: TaskInfo

    @property
    def folder(self) -> str:
        return cache_key(self.name, non_default_params(self))

    def prepare(self, cache_dir: Path) -> Path:
        out = Path(cache_dir) / "tasks" / self.folder / f"{self.name}.parquet"
        return write_once(out, lambda: self.build(Path(cache_dir)))

    @abstractmethod
    def build(self, cache_dir: Path) -> tuple[pd.DataFrame, dict[str, object]]:
        """The table (``name, sequence, label, split`` ...) and its provenance; sources are
        fetched under ``cache_dir`` (shared with the dataset recipes)."""


def assign_classes(frame: pd.DataFrame, classes: tuple[str, ...], source: str) -> pd.DataFrame:
    """Add ``y`` (class ids) after checking every label, that train is not empty and that no
    class appears in valid/test without appearing in train."""
    frame = frame.reset_index(drop=True).copy()
    frame["label"] = labels_as_text(frame, source)
    train = frame["split"] == "train"
    if not train.any():
        counts = frame["split"].value_counts().to_dict()
        raise D3lmError(f"{source}: the train split is empty (splits: {counts})")
    unseen = (~train & ~frame["label"].isin(set(frame.loc[train, "label"]))).to_numpy()
    if unseen.any():
        i = int(unseen.argmax())
        raise D3lmError(
            f"{source}: {record(frame, i)}: class {frame['label'].iloc[i]!r} is in the "
            f"{frame['split'].iloc[i]} split but never in train"
        )
    index = {c: i for i, c in enumerate(classes)}
    unknown = ~frame["label"].isin(list(index)).to_numpy()
    if unknown.any():
        i = int(unknown.argmax())
        raise D3lmError(
            f"{source}: {record(frame, i)}: label {frame['label'].iloc[i]!r} is not one of the "
            f"task's classes ({', '.join(classes)})"
        )
    return frame.assign(y=frame["label"].map(index).astype("int64"))


def user_classes(frame: pd.DataFrame, num_classes: int | None, source: str) -> tuple[str, ...]:
    """Sorted train labels (numerically when all labels are integers); with ``num_classes``,
    integer labels must lie in ``0 .. num_classes - 1`` and classes are exactly those ids."""
    labels = frame["label"]
    integers = bool(labels.str.fullmatch(_INTEGER).all())
    if num_classes is not None and integers:
        values = labels.astype(int).to_numpy()
        bad = (values < 0) | (values >= num_classes)
        if bad.any():
            i = int(bad.argmax())
            raise D3lmError(
                f"{source}: {record(frame, i)}: label {values[i]} is out of range for "
                f"num_classes={num_classes} (0..{num_classes - 1})"
            )
        return tuple(str(i) for i in range(num_classes))
    train = set(labels[frame["split"] == "train"])
    classes = tuple(sorted(train, key=int) if integers else sorted(train))
    if num_classes is not None and len(classes) != num_classes:
        raise D3lmError(
            f"{source}: {len(classes)} classes in train ({', '.join(classes)}), "
            f"not num_classes={num_classes}"
        )
    return classes


def load_task(
    spec: str,
    cache_dir: Path,
    *,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    num_classes: int | None = None,
    params: Mapping[str, Any] | None = None,
) -> LabelledTable:
    """A registered task name (built once into ``cache_dir/tasks/``, with constructor ``params``)
    or a user file (``valid_fraction`` / ``test_fraction`` split it when it has no split;
    ``valid_fraction`` of its train records become valid when its splits hold no valid)."""
    if spec in TASKS:
        task = TASKS.build(spec, params)
        path = task.prepare(Path(cache_dir))
        classes = task.info.classes
        if num_classes is not None and num_classes != len(classes):
            raise D3lmError(f"task {spec} has {len(classes)} classes {classes}, not {num_classes}")
        return LabelledTable(
            task.info, assign_classes(pd.read_parquet(path), classes, str(path)), path
        )
    if params:
        raise D3lmError(f"task params {dict(params)} apply to registered tasks, not to {spec}")
    path = Path(spec)
    if not path.exists():
        raise NotFound(
            f"task {spec!r} is neither a file nor a registered task ({', '.join(TASKS.names())})"
        )
    frame, notes = read_user_table(path, valid_fraction, test_fraction)
    classes = user_classes(frame, num_classes, spec)
    frame = assign_classes(frame, classes, spec)
    lengths = frame["sequence"].str.len().unique()
    info = TaskInfo(spec, classes, int(lengths[0]) if len(lengths) == 1 else None)
    return LabelledTable(info, frame, path, notes)
