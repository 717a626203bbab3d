"""Labelled sequence files from users: CSV, TSV, parquet, or FASTA with ``label=X [split=Y]`` in
each header, holding ``sequence, label[, split][, name]``.

Without a ``split`` column the split is a CRC32 hash of the record name (of the sequence when
there is no name), so a record, and every copy of a sequence, keeps its split on every machine.
A file whose splits are train and test only gets its validation split from train by that hash.
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


def read_user_table(
    path: Path, valid_fraction: float, test_fraction: float
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """``name, sequence, label, split`` of a user's file, sequences checked (ACGTN, unique names,
    split values), labels as text; the row order of the file is kept. Also notes on what was
    done to the file's own splits (:func:`carve_valid`), for the run to report and record."""
    check_fractions(valid_fraction, test_fraction)
    source = str(path)
    readers = {**READERS, **dict.fromkeys(FASTA_SUFFIXES, read_labelled_fasta)}
    frame = read_file(path, readers).reset_index(drop=True)
    for column in ("sequence", "label"):
        if column not in frame.columns:
            raise D3lmError(f"{source}: no {column!r} column (columns: {list(frame.columns)})")
    frame["label"] = labels_as_text(frame, source)
    keys = split_keys(frame)  # before validate() names unnamed records by row
    if "split" in frame.columns:
        missing = frame["split"].isna().to_numpy() | frame["split"].astype(str).str.strip().eq("")
        if missing.any():
            raise D3lmError(
                f"{source}: {record(frame, int(missing.argmax()))}: missing split (a file with "
                "splits needs one on every record: train, valid or test)"
            )
        frame["split"] = frame["split"].astype(str).str.strip()
    else:
        frame["split"] = hash_split(keys, valid_fraction, test_fraction)
    frame, note = carve_valid(validate(frame, source), keys, valid_fraction, source)
    return frame[["name", "sequence", "label", "split"]], (note,) if note else ()


def split_keys(frame: pd.DataFrame) -> pd.Series:
    """What a record's split is hashed from: its name, else its sequence (so every copy of a
    sequence lands in one split)."""
    return frame["name"] if "name" in frame.columns else frame["sequence"].astype(str).str.upper()


def carve_valid(
    frame: pd.DataFrame, keys: pd.Series, valid_fraction: float, source: str
) -> tuple[pd.DataFrame, str | None]:
    """A file whose own splits hold train but no valid records (train and test only) gets
    ``valid_fraction`` of its train records as the validation split, chosen by the hash of
    ``keys`` that splits files without a split column, so the same records move on every
    machine; a class whose every train record the hash picks stays in train, so carving never
    takes a class away from training. Returns the table and a note saying how many moved
    (None: none did)."""
    if (frame["split"] == "valid").any():
        return frame, None
    train = (frame["split"] == "train").to_numpy()
    moved = train & (hash_split(keys, valid_fraction, 0.0) == "valid").to_numpy()
    moved &= frame["label"].isin(set(frame["label"][train & ~moved])).to_numpy()
    if not moved.any():
        return frame, None
    note = (
        f"{source}: no valid split; {int(moved.sum())} of {int(train.sum())} train records "
        f"moved to valid (valid_fraction={valid_fraction}, by a hash of the record name)"
    )
    return frame.assign(split=frame["split"].mask(moved, "valid")), note
