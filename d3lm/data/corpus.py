"""Pretraining windows drawn from whole chromosomes with evaluation windows held out (pure part
of the ``chromosomes`` recipe).

Windows are drawn uniformly (seeded) from the bases that are not N and lie in no held-out
interval; the free stretches are cut at genomic block edges first, so each window lies in one
block and takes that block's split (``genome.block_split``): a pretraining window never shares a
base with an evaluation window, nor with a window of another split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from d3lm.data.genome import WindowConfig, block_split
from d3lm.data.intervals import acgt_runs, cut_at_blocks, draw_windows, merge, subtract


@dataclass(frozen=True)
class CorpusConfig:
    """``count`` windows of ``length`` bp; ``split``: block size and valid / test fractions."""

    length: int = 1024
    count: int = 50_000
    seed: int = 0
    split: WindowConfig = field(
        default_factory=lambda: WindowConfig(valid_fraction=0.05, test_fraction=0.05)
    )


def corpus_windows(
    genome: Mapping[str, str], held_out: pd.DataFrame, config: CorpusConfig
) -> tuple[pd.DataFrame, dict[str, int]]:
    """``name, chrom, start, end, sequence, split`` (forward strand, sorted) and the bp counts."""
    acgt = acgt_runs(genome)
    free = subtract(acgt, held_out)
    pieces = cut_at_blocks(free, config.split.block_size)
    frame = draw_windows(pieces, config.length, config.count, np.random.default_rng(config.seed))
    frame["sequence"] = [
        genome[c][s:e] for c, s, e in frame[["chrom", "start", "end"]].itertuples(index=False)
    ]
    frame["name"] = (
        frame["chrom"] + ":" + frame["start"].astype(str) + "-" + frame["end"].astype(str)
    )
    frame["split"] = block_split(frame["chrom"], frame["start"], config.split)
    counts = {
        "acgt_bp": int((acgt["end"] - acgt["start"]).sum()),
        "free_bp": int((free["end"] - free["start"]).sum()),
        "windows": len(frame),
    }
    return frame[["name", "chrom", "start", "end", "sequence", "split"]], counts


def interval_digest(intervals: pd.DataFrame) -> dict[str, object]:
    """Provenance of a held-out set: window count, merged intervals, bp covered and the SHA-256
    of the merged list as ``chrom<TAB>start<TAB>end`` lines sorted by chromosome and start."""
    merged = merge(intervals)
    text = "".join(f"{c}\t{s}\t{e}\n" for c, s, e in merged.itertuples(index=False))
    return {
        "windows": len(intervals),
        "merged_intervals": len(merged),
        "bp": int((merged["end"] - merged["start"]).sum()),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "format": "merged, sorted chrom<TAB>start<TAB>end lines, 0-based half-open",
    }
