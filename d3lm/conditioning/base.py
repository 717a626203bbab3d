"""How a class label enters the network: one reserved *condition token* in the ``<cls>`` slot.

Why a token and not an embedding added at every position: the label then travels inside the ids,
so everything that moves ids (batches, DDP shards, sampler cohorts and their merged network
calls, sampling workers, ``infill``) carries it with no extra argument, and classifier-free
guidance is one more batch of the same ids with the token swapped for the *null* token. The
condition tokens get ids after the tokenizer's vocabulary (``first_id = vocab_size``) and an
embedding table of their own, so the NT v2 weight layout (word embeddings, LM head) is
untouched and the LM head never predicts them.

Ids: class ``k`` of ``classes`` is ``first_id + k``; the null (unconditional) token is
``first_id + len(classes)``. ``none`` reserves no token and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import pandas as pd
import torch
from torch import Tensor

from d3lm.errors import D3lmError
from d3lm.params import Probability
from d3lm.registry import CONDITIONINGS

#: The table column holding each record's label (DHS cell types; any user table's ``label``).
LABEL_COLUMN = "label"

#: The position of the condition token: the ``<cls>`` slot every built-in tokenizer has.
POSITION = 0


@runtime_checkable
class Conditioning(Protocol):
    """``n_tokens`` condition ids the model embeds after the vocabulary (0: unconditional)."""

    classes: tuple[str, ...]
    n_tokens: int


@CONDITIONINGS.register("none")
class NoConditioning:
    """Unconditional (the paper's): no label reaches the network."""

    classes: tuple[str, ...] = ()
    n_tokens = 0

    def __init__(self, first_id: int = 0) -> None:
        self.first_id = first_id

    @classmethod
    def fit(cls, table: pd.DataFrame, params: Mapping[str, Any], source: str) -> dict[str, Any]:
        return dict(params)


@CONDITIONINGS.register("label", examples=({"classes": ["GM12878", "K562"]},))
class LabelConditioning:
    """Class label as a learned condition token in the ``<cls>`` slot, dropped to the null token
    with probability ``p_uncond`` in training so one network is conditional and unconditional
    (classifier-free guidance). ``classes`` are fitted from the training split's ``label``."""

    def __init__(
        self, classes: Sequence[str] = (), p_uncond: Probability = 0.1, first_id: int = 0
    ) -> None:
        self.classes = tuple(str(c) for c in classes)
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes repeat a name: {list(self.classes)}")
        spaced = [c for c in self.classes if c.split() != [c]]
        if spaced:  # samples carry their class in FASTA headers as label=NAME
            raise ValueError(f"class names must be non-empty without whitespace: {spaced[0]!r}")
        self.p_uncond = float(p_uncond)
        self.first_id = first_id
        self.n_tokens = len(self.classes) + 1

    @classmethod
    def fit(cls, table: pd.DataFrame, params: Mapping[str, Any], source: str) -> dict[str, Any]:
        """``params`` with ``classes`` (sorted) from the training split's labels, unless given.
        A table without a ``label`` column, or a record without a label, is an error naming
        ``source`` and the record."""
        params = dict(params)
        labels = record_labels(table, source)
        spaced = labels.str.contains(r"\s")
        if spaced.any():
            raise D3lmError(
                f"{source}: record {first_record(table, spaced)!r}: label "
                f"{labels[spaced].iloc[0]!r} holds whitespace; samples carry their class in "
                "FASTA headers as label=NAME, so a class name is one word"
            )
        if not params.get("classes"):
            train = labels[table["split"] == "train"] if "split" in table.columns else labels
            params["classes"] = sorted(train.unique())
        return params

    @property
    def null_id(self) -> int:
        return self.first_id + len(self.classes)

    def class_id(self, label: str, record: str = "") -> int:
        """The condition id of ``label``; an unknown one is an error naming ``record``."""
        try:
            return self.first_id + self.classes.index(str(label))
        except ValueError:
            where = f"record {record!r}: " if record else ""
            raise D3lmError(
                f"{where}label {label!r} is not a class of this model "
                f"(classes: {', '.join(self.classes)})"
            ) from None

    def encode(self, ids: Tensor, labels: Sequence[str | None], names: Sequence[str]) -> Tensor:
        """``ids`` (B, L) with the ``<cls>`` slot holding each row's condition token (None: the
        null token)."""
        if len(labels) != ids.shape[0]:
            raise ValueError(f"{len(labels)} labels for {ids.shape[0]} rows")
        tokens = [
            self.null_id if label is None else self.class_id(label, name)
            for label, name in zip(labels, names, strict=True)
        ]
        out = ids.clone()
        out[:, POSITION] = torch.tensor(tokens, dtype=ids.dtype, device=ids.device)
        return out

    def drop(self, ids: Tensor, generator: torch.Generator) -> Tensor:
        """Training's label dropout: each row's condition token becomes the null token with
        probability ``p_uncond`` (drawn from ``generator``, so a resumed run drops the same)."""
        u = torch.rand(ids.shape[0], generator=generator, device=ids.device)
        out = ids.clone()
        out[:, POSITION] = torch.where(u < self.p_uncond, self.null_id, ids[:, POSITION])
        return out

    def unconditional(self, ids: Tensor) -> Tensor:
        """``ids`` with every row's condition token replaced by the null token."""
        out = ids.clone()
        out[:, POSITION] = self.null_id
        return out

    def layout(self, layout: Tensor) -> Tensor:
        """The tokenizer's (L, V) layout widened to (L, V + n_tokens): the ``<cls>`` slot allows
        the condition tokens (classes and null) instead, every other position what it did."""
        wide = torch.zeros(
            layout.shape[0],
            self.first_id + self.n_tokens,
            dtype=layout.dtype,
            device=layout.device,
        )
        wide[:, : layout.shape[1]] = layout
        wide[POSITION] = False
        wide[POSITION, self.first_id :] = True
        return wide

    def strip(self, ids: Tensor, cls_id: int) -> Tensor:
        """``ids`` with the condition tokens turned back into ``<cls>`` (for decoding)."""
        out = ids.clone()
        out[:, POSITION] = cls_id
        return out


def first_record(table: pd.DataFrame, rows: pd.Series) -> str:
    """The name of the first record where ``rows`` is True (``row i`` without a name column)."""
    if "name" in table.columns:
        return str(table.loc[rows, "name"].iloc[0])
    return f"row {int(rows.to_numpy().argmax())}"


def record_labels(table: pd.DataFrame, source: str) -> pd.Series:
    """Every record's label as text; a table without the column, or a record without a label,
    is an error naming ``source`` and the record."""
    if LABEL_COLUMN not in table.columns:
        raise D3lmError(
            f"{source}: conditioning 'label' needs a {LABEL_COLUMN!r} column; the table has "
            f"{', '.join(map(str, table.columns))}"
        )
    raw = table[LABEL_COLUMN]
    labels = raw.astype(str)
    missing = raw.isna() | (labels.str.strip() == "")
    if missing.any():
        raise D3lmError(
            f"{source}: record {first_record(table, missing)!r} has no {LABEL_COLUMN!r} "
            f"({int(missing.sum())} of {len(table)} records lack one)"
        )
    return labels
