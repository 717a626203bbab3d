"""Half-open genomic intervals ``[start, end)``: N runs, merging, subtraction, seeded window draws
and overlap-safe splits. Pure functions, so synthetic genomes test what real ones build.

An interval table is a DataFrame with ``chrom, start, end`` (0-based, forward strand).
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise

import numpy as np
import pandas as pd

from d3lm.data.genome import WindowConfig, block_split
from d3lm.errors import D3lmError

COLUMNS = ["chrom", "start", "end"]


def table(rows: list[tuple[str, int, int]] | None = None) -> pd.DataFrame:
    return pd.DataFrame(rows or [], columns=COLUMNS).astype({"start": "int64", "end": "int64"})


def acgt_runs(genome: Mapping[str, str]) -> pd.DataFrame:
    """Maximal runs without N on every chromosome (N runs are assembly gaps, never training)."""
    rows = []
    for chrom, seq in genome.items():
        known = np.frombuffer(seq.encode(), dtype=np.uint8) != ord("N")
        edges = np.diff(np.concatenate([[False], known, [False]]).astype(np.int8))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        rows += [(chrom, int(s), int(e)) for s, e in zip(starts, ends, strict=True)]
    return table(rows)


def merge(intervals: pd.DataFrame) -> pd.DataFrame:
    """Union of ``intervals``: sorted, with overlapping or touching ones joined."""
    if intervals.empty:
        return table()
    frame = intervals[COLUMNS].sort_values(["chrom", "start", "end"], kind="stable")
    reach = frame.groupby("chrom")["end"].cummax()
    previous = reach.groupby(frame["chrom"]).shift(1, fill_value=-1)
    group = (frame["start"] > previous).cumsum()
    merged = frame.groupby(group).agg(chrom=("chrom", "first"), start=("start", "min"))
    merged["end"] = reach.groupby(group).max()
    return merged.reset_index(drop=True)


def subtract(intervals: pd.DataFrame, removed: pd.DataFrame) -> pd.DataFrame:
    """The parts of ``intervals`` that no interval of ``removed`` covers."""
    cuts = {c: g for c, g in merge(removed).groupby("chrom")}
    rows = []
    for chrom, start, end in merge(intervals).itertuples(index=False):
        cut = cuts.get(chrom)
        if cut is None:
            rows.append((chrom, start, end))
            continue
        cs, ce = cut["start"].to_numpy(), cut["end"].to_numpy()
        first, last = np.searchsorted(ce, start, "right"), np.searchsorted(cs, end, "left")
        position = start
        for s, e in zip(cs[first:last], ce[first:last], strict=True):
            if s > position:
                rows.append((chrom, position, int(s)))
            position = max(position, int(e))
        if position < end:
            rows.append((chrom, position, end))
    return table(rows)


def cut_at_blocks(intervals: pd.DataFrame, block_size: int) -> pd.DataFrame:
    """Split intervals at multiples of ``block_size``, so a window drawn inside one piece lies
    in one genomic block and can never straddle two splits."""
    rows = []
    for chrom, start, end in intervals[COLUMNS].itertuples(index=False):
        edges = [start, *range((start // block_size + 1) * block_size, end, block_size), end]
        rows += [(chrom, a, b) for a, b in pairwise(edges)]
    return table(rows)


def draw_windows(
    intervals: pd.DataFrame, length: int, count: int, rng: np.random.Generator
) -> pd.DataFrame:
    """``count`` distinct windows of ``length`` bp drawn uniformly from the start positions that
    keep a window inside one of ``intervals``, sorted by position."""
    frame = intervals[COLUMNS].reset_index(drop=True)
    starts = np.maximum(frame["end"].to_numpy() - frame["start"].to_numpy() - length + 1, 0)
    total = int(starts.sum())
    if count > total:
        raise D3lmError(f"only {total} windows of {length} bp fit, fewer than the {count} asked")
    picks = np.sort(rng.choice(total, size=count, replace=False))
    offsets = np.cumsum(starts) - starts
    which = np.searchsorted(offsets, picks, side="right") - 1
    start = frame["start"].to_numpy()[which] + picks - offsets[which]
    return pd.DataFrame(
        {"chrom": frame["chrom"].to_numpy()[which], "start": start, "end": start + length}
    )


def overlaps(windows: pd.DataFrame, intervals: pd.DataFrame) -> np.ndarray:
    """For each window, whether it shares at least one base with any of ``intervals``."""
    hit = np.zeros(len(windows), dtype=bool)
    merged = {c: g for c, g in merge(intervals).groupby("chrom")}
    for chrom, rows in windows.reset_index(drop=True).groupby("chrom"):
        if chrom not in merged:
            continue
        cs, ce = merged[chrom]["start"].to_numpy(), merged[chrom]["end"].to_numpy()
        # the last merged interval starting before the window's end must end after its start
        k = np.searchsorted(cs, rows["end"].to_numpy(), side="left") - 1
        hit[rows.index] = (k >= 0) & (ce[np.maximum(k, 0)] > rows["start"].to_numpy())
    return hit


def locus_split(frame: pd.DataFrame, config: WindowConfig) -> pd.Series:
    """train/valid/test of each window by the genomic block of its locus (windows chained by
    overlap on either strand), so windows that share a base always share a split."""
    order = frame.sort_values(["chrom", "start"], kind="stable")
    reach = order.groupby("chrom")["end"].cummax()
    previous = reach.groupby(order["chrom"]).shift(1, fill_value=-1)
    locus = (order["start"] >= previous).cumsum()
    first = order["start"].groupby(locus).transform("first")
    return block_split(order["chrom"], first, config).reindex(frame.index)
