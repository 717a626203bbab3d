"""Chromosome FASTA and TSS tables -> TSS-centred promoter windows (the pure part of ``promoters``).

Coordinates are 0-based, half-open ``[start, end)`` on the forward strand. A window of ``width``
bp puts the TSS base at index ``width // 2`` (1,024 for 2,048 bp: 1,024 bases upstream, the TSS,
1,023 downstream) *in transcription direction*: minus-strand windows are cut so that, once
reverse-complemented, the TSS lands on that same index. Windows that share any base are one locus
(clustered on either strand, so a bidirectional promoter is one locus) and only the leftmost is
kept; kept windows therefore never overlap, and the split of each is drawn from its genomic block
(chromosome, ``start // block_size``) so neighbouring loci share a split.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from d3lm.data.fasta import read_fasta
from d3lm.errors import D3lmError

_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")


def normalise_chrom(name: str) -> str:
    """``20``, ``chr20`` and ``X  gi|...`` (a FASTA header) -> ``chr20`` / ``chrX``."""
    name = name.split()[0]
    return name if name.startswith("chr") else f"chr{name}"


def reverse_complement(seq: str) -> str:
    return seq.translate(_COMPLEMENT)[::-1]


def read_chromosomes(paths: Iterable[str | os.PathLike[str]]) -> dict[str, str]:
    """Every record of the FASTA(.gz) ``paths`` by normalised name, upper-cased."""
    out: dict[str, str] = {}
    for path in paths:
        for name, seq in read_fasta(path):
            chrom = normalise_chrom(name)
            if chrom in out:
                raise D3lmError(f"{path}: chromosome {chrom!r} appears twice")
            out[chrom] = seq
    return out


def text_fields(path: str | os.PathLike[str]) -> Iterator[tuple[int, str, list[str]]]:
    """``(line number, line, whitespace-split fields)`` of every non-blank line of a text
    table, optionally gzipped: the reading loop of the annotation formats."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        for lineno, line in enumerate(handle, start=1):
            fields = line.split()
            if fields:
                yield lineno, line, fields


def read_tss(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A ``chrom, 0-based TSS, strand`` table (tab-separated, optionally gzipped, no header)."""
    rows = []
    for lineno, line, fields in text_fields(path):
        if len(fields) != 3 or fields[2] not in "+-" or not fields[1].isdigit():
            raise D3lmError(
                f"{path}: line {lineno}: expected 'chrom<TAB>0-based TSS<TAB>+|-', "
                f"got {line.strip()!r}"
            )
        rows.append((normalise_chrom(fields[0]), int(fields[1]), fields[2]))
    return pd.DataFrame(rows, columns=["chrom", "tss", "strand"])


@dataclass(frozen=True)
class WindowConfig:
    """How TSS become windows and splits (the test split is large because evaluation halves it).

    ``max_n_fraction``: windows with more N than this are dropped (0.01 = 20 of 2,048 bases).
    """

    width: int = 2048
    max_n_fraction: float = 0.01
    block_size: int = 1_000_000
    valid_fraction: float = 0.1
    test_fraction: float = 0.2


def window_bounds(tss: np.ndarray, minus: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Forward-strand ``[start, end)`` of windows whose index ``width // 2`` (in transcription
    direction) is the TSS base."""
    centre = width // 2
    start = np.where(minus, tss + centre + 1 - width, tss - centre)
    return start, start + width


def block_split(chrom: pd.Series, start: pd.Series, config: WindowConfig) -> pd.Series:
    """train/valid/test by CRC32 of ``chrom:start // block_size`` (stable on every machine)."""
    keys = chrom.astype(str) + ":" + (start // config.block_size).astype(str)
    u = keys.map(lambda k: zlib.crc32(k.encode()) / 2**32)
    valid, test = config.valid_fraction, config.valid_fraction + config.test_fraction
    return pd.Series(
        np.where(u < valid, "valid", np.where(u < test, "test", "train")), index=chrom.index
    )


def tss_windows(
    chromosomes: Mapping[str, str], tss: pd.DataFrame, config: WindowConfig | None = None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Promoter windows and the counts of each filter step.

    Returns ``name, chrom, start, end, strand, tss, n_tss, sequence, split`` (``n_tss``: TSS
    collapsed into the locus) sorted by position, and the counts ``distinct_tss`` (on the given
    chromosomes; others are ignored), ``off_chromosome`` (window past either end, e.g. beyond a
    truncated FASTA), ``too_many_n`` and ``loci``.
    """
    config = config or WindowConfig()
    frame = tss[tss["chrom"].isin(list(chromosomes))].drop_duplicates(["chrom", "tss", "strand"])
    start, end = window_bounds(
        frame["tss"].to_numpy(), (frame["strand"] == "-").to_numpy(), config.width
    )
    frame = frame.assign(start=start, end=end)
    sizes = frame["chrom"].map({c: len(s) for c, s in chromosomes.items()})
    inside = (frame["start"] >= 0) & (frame["end"] <= sizes)
    counts = {"distinct_tss": len(frame), "off_chromosome": int((~inside).sum())}
    frame = frame[inside]
    bounds = zip(frame["chrom"], frame["start"], frame["end"], strict=True)
    seqs = [chromosomes[c][s:e] for c, s, e in bounds]
    n_fraction = np.array([s.count("N") / config.width for s in seqs])
    keep = n_fraction <= config.max_n_fraction
    counts["too_many_n"] = int((~keep).sum())
    frame = frame[keep].assign(sequence=[s for s, k in zip(seqs, keep, strict=True) if k])
    frame = frame.sort_values(["chrom", "start", "strand"], kind="stable").reset_index(drop=True)
    # a window opens a new locus when it starts at or after every earlier window's end
    reach = frame.groupby("chrom")["end"].cummax()
    previous = reach.groupby(frame["chrom"]).shift(1, fill_value=-1)
    locus = (frame["start"] >= previous).cumsum()
    frame = frame.assign(n_tss=locus.map(locus.value_counts()))[~locus.duplicated()]
    minus = frame["strand"] == "-"
    frame.loc[minus, "sequence"] = frame.loc[minus, "sequence"].map(reverse_complement)
    frame = frame.assign(
        name=frame["chrom"] + ":" + frame["tss"].astype(str) + frame["strand"],
        split=block_split(frame["chrom"], frame["start"], config),
    )
    counts["loci"] = len(frame)
    columns = ["name", "chrom", "start", "end", "strand", "tss", "n_tss", "sequence", "split"]
    return frame[columns].reset_index(drop=True), counts
