"""Labelled sequence files from users: CSV, TSV, parquet, or FASTA with ``label=X [split=Y]`` in
each header, holding ``sequence, label[, split][, name]``.

Without a ``split`` column the split is a CRC32 hash of the record name (of the sequence when
there is no name), so a record, and every copy of a sequence, keeps its split on every machine.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from d3lm.data.fasta import read_fasta_described
from d3lm.data.tables import READERS, check_fractions, hash_split, read_file, validate
from d3lm.errors import D3lmError

FASTA_SUFFIXES = (".fa", ".fasta", ".fna")


def read_labelled_fasta(path: Path) -> pd.DataFrame:
    """``name, sequence, label[, split]`` from headers ``>name label=X [split=Y]``; a header
    without ``label=`` gives a missing label (reported with the record's name later)."""
    rows = []
    for name, description, seq in read_fasta_described(path):
        tags = dict(t.split("=", 1) for t in description.split() if "=" in t)
        rows.append({"name": name, "sequence": seq, "label": tags.get("label"), **_split(tags)})
    return pd.DataFrame(rows)


def _split(tags: dict[str, str]) -> dict[str, str]:
    return {"split": tags["split"]} if "split" in tags else {}


def record(frame: pd.DataFrame, i: int) -> str:
    """``record 'name' (row 3)``: how errors point at a row (counted from 1, header excluded)."""
    name = frame["name"].iloc[i] if "name" in frame.columns else None
    row = f"row {i + 1}"
    return f"record {name!r} ({row})" if name is not None and not pd.isna(name) else row


def labels_as_text(frame: pd.DataFrame, source: str) -> pd.Series:
    """Labels as stripped strings (integral floats as integers: a CSV column with a gap reads
    as float); a missing or empty one is an error naming the record."""
    raw = frame["label"]
    numeric = pd.api.types.is_numeric_dtype(raw)
    text = raw.map(
        lambda v: "" if pd.isna(v) else str(int(v)) if numeric and v == int(v) else str(v)
    )
    missing = raw.isna().to_numpy() | text.str.strip().eq("").to_numpy()
    if missing.any():
        raise D3lmError(f"{source}: {record(frame, int(missing.argmax()))}: missing label")
    return text.str.strip()


def read_user_table(path: Path, valid_fraction: float, test_fraction: float) -> pd.DataFrame:
    """``name, sequence, label, split`` of a user's file, sequences checked (ACGTN, unique names,
    split values), labels as text; the row order of the file is kept."""
    check_fractions(valid_fraction, test_fraction)
    source = str(path)
    readers = {**READERS, **dict.fromkeys(FASTA_SUFFIXES, read_labelled_fasta)}
    frame = read_file(path, readers).reset_index(drop=True)
    for column in ("sequence", "label"):
        if column not in frame.columns:
            raise D3lmError(f"{source}: no {column!r} column (columns: {list(frame.columns)})")
    frame["label"] = labels_as_text(frame, source)
    if "split" in frame.columns:
        missing = frame["split"].isna().to_numpy() | frame["split"].astype(str).str.strip().eq("")
        if missing.any():
            raise D3lmError(
                f"{source}: {record(frame, int(missing.argmax()))}: missing split (a file with "
                "splits needs one on every record: train, valid or test)"
            )
        frame["split"] = frame["split"].astype(str).str.strip()
    else:
        keys = (
            frame["name"] if "name" in frame.columns else frame["sequence"].astype(str).str.upper()
        )
        frame["split"] = hash_split(keys, valid_fraction, test_fraction)
    frame = validate(frame, source)
    return frame[["name", "sequence", "label", "split"]]
