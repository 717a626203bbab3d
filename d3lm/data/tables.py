"""Sequence tables from a recipe name or a user file (parquet, CSV/TSV, FASTA).

Every table comes out with ``name, sequence, split`` (and ``label`` when the source has one).
Files without a ``split`` column get a deterministic split by a hash of the record name, so the
same record lands in the same split on every machine.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from d3lm.data.fasta import read_fasta
from d3lm.data.recipes import SPLITS, prepare
from d3lm.errors import D3lmError, NotFound
from d3lm.registry import DATASETS

_INVALID = re.compile(r"[^ACGTN]")


def _read_fasta_table(path: Path) -> pd.DataFrame:
    return pd.DataFrame(read_fasta(path), columns=["name", "sequence"])


READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    ".parquet": pd.read_parquet,
    ".csv": pd.read_csv,
    ".tsv": lambda p: pd.read_csv(p, sep="\t"),
    ".fa": _read_fasta_table,
    ".fasta": _read_fasta_table,
    ".fna": _read_fasta_table,
}


def read_file(
    path: Path, readers: Mapping[str, Callable[[Path], pd.DataFrame]] = READERS
) -> pd.DataFrame:
    """Read a user's table (with ``readers`` by suffix), turning a directory, an empty, truncated
    or binary file into an error that names the file and the reason."""
    if path.is_dir():
        raise D3lmError(f"{path}: is a directory; expected a sequence file")
    reader = _reader(path, readers)
    if path.stat().st_size == 0:
        raise D3lmError(f"{path}: empty file")
    try:
        frame = reader(path)
    except D3lmError:
        raise
    except (
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        UnicodeDecodeError,
        EOFError,
        gzip.BadGzipFile,
        zlib.error,
        pa.ArrowException,
        OSError,
    ) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise D3lmError(f"{path}: cannot read it as {_format(path)}: {reason}") from None
    if frame.empty:
        raise D3lmError(f"{path}: no records")
    return frame


def _format(path: Path) -> str:
    return [s for s in path.suffixes if s != ".gz"][-1].lstrip(".")


def _reader(
    path: Path, readers: Mapping[str, Callable[[Path], pd.DataFrame]]
) -> Callable[[Path], pd.DataFrame]:
    suffixes = [s for s in path.suffixes if s != ".gz"]
    if suffixes and suffixes[-1] in readers:
        return readers[suffixes[-1]]
    raise D3lmError(f"{path}: unknown table format; expected one of {', '.join(readers)} (.gz ok)")


def hash_split(names: pd.Series, valid_fraction: float, test_fraction: float) -> pd.Series:
    """Assign train/valid/test by CRC32 of each record name (stable across runs and machines):
    u = crc32 / 2**32 in [0, valid_fraction] is valid, up to valid + test fraction test, the rest
    train; a fraction of 0 makes no such split."""
    u = names.astype(str).map(lambda n: zlib.crc32(n.encode()) / 2**32).to_numpy()
    valid = (u <= valid_fraction) & (valid_fraction > 0)
    test = ~valid & (u <= valid_fraction + test_fraction) & (test_fraction > 0)
    return pd.Series(np.select([valid, test], ["valid", "test"], "train"), index=names.index)


def validate(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Upper-case sequences and reject bad records, naming the source, record and reason."""
    if "sequence" not in frame.columns:
        raise D3lmError(f"{source}: no 'sequence' column (columns: {list(frame.columns)})")
    frame = frame.copy()
    if "name" not in frame.columns:
        frame["name"] = [f"{source}:{i + 1}" for i in range(len(frame))]
    missing = frame["sequence"].isna()
    if missing.any():  # an empty CSV cell; str() would turn it into the valid 'NAN'
        raise D3lmError(f"{source}: record {frame['name'][missing].iloc[0]!r}: empty sequence")
    frame["sequence"] = frame["sequence"].astype(str).str.upper()
    for name, seq in zip(frame["name"], frame["sequence"], strict=True):
        match = _INVALID.search(seq)
        if not seq.strip("N") or match:
            reason = (
                "empty sequence"
                if not seq
                else f"invalid character {match.group()!r} at position {match.start() + 1}"
                if match
                else "only N"
            )
            raise D3lmError(f"{source}: record {name!r}: {reason}")
    repeated = frame["name"].astype(str).duplicated(keep=False)
    if repeated.any():
        names = frame["name"][repeated].astype(str)
        raise D3lmError(
            f"{source}: record name {names.iloc[0]!r} is used {int((names == names.iloc[0]).sum())}"
            f" times ({names.nunique()} names repeat); names must be unique (the train/valid/test"
            " split is a hash of the name)"
        )
    bad_split = ~frame["split"].isin(SPLITS)
    if bad_split.any():
        row = frame[bad_split].iloc[0]
        raise D3lmError(
            f"{source}: record {row['name']!r}: split {row['split']!r} is not one of "
            f"{', '.join(SPLITS)}"
        )
    return frame


def check_fractions(valid_fraction: float, test_fraction: float) -> None:
    """Hash-split fractions must leave something to train on."""
    for key, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise D3lmError(f"data.{key}={value}: must be in [0, 1)")
    if valid_fraction + test_fraction >= 1:
        raise D3lmError(
            f"data.valid_fraction + data.test_fraction = {valid_fraction + test_fraction}: "
            "nothing is left to train on"
        )


def load_table(
    source: str,
    cache_dir: Path,
    valid_fraction: float = 0.05,
    test_fraction: float = 0.05,
    params: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Load ``source`` (a registered dataset name, built with ``params``, or a file path) as a
    validated table."""
    check_fractions(valid_fraction, test_fraction)
    if source in DATASETS:
        path = prepare(source, cache_dir, params)
    elif params:
        raise D3lmError(f"data.params={dict(params)} applies to dataset recipes, not to {source}")
    else:
        path = Path(source)
        if not path.exists():
            raise NotFound(
                f"data source {source!r} is neither a file nor a known dataset "
                f"({', '.join(DATASETS.names())})"
            )
    frame = read_file(path)
    if "split" not in frame.columns:
        names = frame["name"] if "name" in frame.columns else pd.Series(range(len(frame)))
        frame["split"] = hash_split(names, valid_fraction, test_fraction)
    return validate(frame, str(path))
