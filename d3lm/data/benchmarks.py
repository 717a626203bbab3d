"""Windows of the genomic evaluation tasks (splice donor / acceptor, promoter), pure functions of a
genome and its RefSeq annotation.

One function builds them for both users: the labelled tasks (``d3lm.tasks``) and the ``chromosomes``
pretraining corpus, which must hold out exactly these windows. Every window is cut in
transcription direction (minus strand reverse-complemented) and split by the genomic block of
its locus (``intervals.locus_split``), so overlapping windows never sit in two splits.

- ``splice_donor`` / ``splice_acceptor`` (chr20): true internal sites (``splice``) against the
  same number of decoys with the same GT / AG at the same index, drawn (seeded) from the genes
  holding true sites, more than ``margin`` bp from any annotated exon boundary.
- ``promoter`` (chr20, chrX): TSS windows (``genome.tss_windows``, TSS at index ``length // 2``,
  no N) against as many random windows (random strand) that overlap no TSS window and no N.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from d3lm.data.genome import WindowConfig, read_tss, reverse_complement, tss_windows, window_bounds
from d3lm.data.intervals import acgt_runs, cut_at_blocks, draw_windows, locus_split, subtract
from d3lm.data.splice import (
    decoy_sites,
    exon_strands,
    gene_strands,
    read_bed,
    splice_sites,
)

DEFAULT_LENGTHS = {"splice_donor": 400, "splice_acceptor": 400, "promoter": 300}
CHROMOSOMES = {
    "splice_donor": ("chr20",),
    "splice_acceptor": ("chr20",),
    "promoter": ("chr20", "chrX"),
}
#: negative class first, so class id 1 is the positive one
CLASSES = {
    "splice_donor": ("decoy", "site"),
    "splice_acceptor": ("decoy", "site"),
    "promoter": ("random", "promoter"),
}
COLUMNS = ["name", "chrom", "start", "end", "strand", "sequence", "label", "split"]


@dataclass(frozen=True)
class Annotation:
    """RefSeq anchors (``chrom, tss, strand`` tables) and unstranded exon / gene BEDs."""

    tss: pd.DataFrame
    tes: pd.DataFrame
    exons: pd.DataFrame
    genes: pd.DataFrame

    @classmethod
    def read(cls, paths: Mapping[str, str | os.PathLike[str]]) -> Annotation:
        """From the files under keys ``tss, tes`` (anchors) and ``exons, genes`` (BED)."""
        return cls(
            tss=read_tss(Path(paths["tss"])),
            tes=read_tss(Path(paths["tes"])),
            exons=read_bed(paths["exons"]),
            genes=read_bed(paths["genes"]),
        )


@dataclass(frozen=True)
class GenomicTask:
    """What fixes one task's windows: its name, window length (None: the task's default), the
    seed of its negatives, the decoys' distance from annotated boundaries, and the split."""

    task: str
    length: int | None = None
    seed: int = 0
    margin: int = 100
    split: WindowConfig = field(default_factory=WindowConfig)

    def __post_init__(self) -> None:
        if self.task not in DEFAULT_LENGTHS:
            raise ValueError(f"unknown genomic task {self.task!r}; known: {list(DEFAULT_LENGTHS)}")
        if self.length is None:
            object.__setattr__(self, "length", DEFAULT_LENGTHS[self.task])
        if self.window < 8:
            raise ValueError(f"{self.task}: length must be at least 8 bp, got {self.length}")
        if self.margin < 0:
            raise ValueError(f"{self.task}: margin must be >= 0, got {self.margin}")

    @property
    def window(self) -> int:
        assert self.length is not None  # set in __post_init__
        return self.length


def genomic_windows(
    spec: GenomicTask, genome: Mapping[str, str], annotation: Annotation
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The task's labelled windows (``COLUMNS``) and the counts of each filter step; chromosomes
    outside the task's ``CHROMOSOMES`` are ignored."""
    genome = {c: s for c, s in genome.items() if c in CHROMOSOMES[spec.task]}
    if spec.task == "promoter":
        frame, counts = _promoter(spec, genome, annotation)
    else:
        frame, counts = _splice(spec, genome, annotation)
    frame = frame.sort_values(["chrom", "start", "strand"], kind="stable").reset_index(drop=True)
    frame["split"] = locus_split(frame, spec.split)
    return frame[COLUMNS], counts


def _bounds(
    genome: Mapping[str, str], sites: pd.DataFrame, length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Window ``start, end`` with ``site`` at index ``length // 2`` in transcription direction,
    and which of them lie inside their chromosome and which of those hold no N."""
    start, end = window_bounds(
        sites["site"].to_numpy(), (sites["strand"] == "-").to_numpy(), length
    )
    inside, clean = np.zeros(len(sites), dtype=bool), np.zeros(len(sites), dtype=bool)
    for chrom, rows in sites.reset_index(drop=True).groupby("chrom"):
        n_before = np.concatenate(
            [[0], np.cumsum(np.frombuffer(genome[chrom].encode(), dtype=np.uint8) == ord("N"))]
        )
        i = rows.index.to_numpy()
        inside[i] = (start[i] >= 0) & (end[i] <= len(genome[chrom]))
        s, e = np.clip(start[i], 0, len(genome[chrom])), np.clip(end[i], 0, len(genome[chrom]))
        clean[i] = inside[i] & (n_before[e] == n_before[s])
    return start, end, inside, clean


def _cut(
    genome: Mapping[str, str], sites: pd.DataFrame, start: np.ndarray, end: np.ndarray
) -> pd.DataFrame:
    """The windows' sequences, minus strand reverse-complemented."""
    frame = sites.assign(start=start, end=end).reset_index(drop=True)
    seqs = [genome[c][s:e] for c, s, e in frame[["chrom", "start", "end"]].itertuples(index=False)]
    minus = frame["strand"] == "-"
    return frame.assign(
        sequence=[reverse_complement(q) if m else q for q, m in zip(seqs, minus, strict=True)]
    )


def _splice(
    spec: GenomicTask, genome: Mapping[str, str], annotation: Annotation
) -> tuple[pd.DataFrame, dict[str, int]]:
    """True sites, and per genomic block as many decoys as true sites (so each split is
    balanced), drawn from that block's candidates."""
    kind = spec.task.removeprefix("splice_")
    on = annotation.genes["chrom"].isin(list(genome))
    genes, counts = gene_strands(annotation.genes[on], annotation.tss, annotation.tes)
    exons, exon_counts = exon_strands(
        annotation.exons[annotation.exons["chrom"].isin(list(genome))], genes
    )
    sites = splice_sites(exons, genes, kind)
    start, end, inside, clean = _bounds(genome, sites, spec.window)
    positives = _cut(genome, sites[clean], start[clean], end[clean])
    candidates = decoy_sites(genome, annotation.exons, genes, sites, kind, spec.margin)
    c_start, c_end, _, c_clean = _bounds(genome, candidates, spec.window)
    candidates = candidates[c_clean].assign(start=c_start[c_clean], end=c_end[c_clean])
    rng = np.random.default_rng(spec.seed)
    block = spec.split.block_size
    wanted = (positives["chrom"] + ":" + (positives["site"] // block).astype(str)).value_counts()
    keys = candidates["chrom"] + ":" + (candidates["site"] // block).astype(str)
    picked = []
    for key in sorted(wanted.index):
        pool = np.flatnonzero((keys == key).to_numpy())
        picked.append(rng.choice(pool, size=min(len(pool), wanted[key]), replace=False))
    chosen = candidates.iloc[np.sort(np.concatenate(picked))] if picked else candidates.iloc[:0]
    decoys = _cut(genome, chosen.drop(columns=["start", "end"]), chosen["start"], chosen["end"])
    frame = pd.concat([positives.assign(label="site"), decoys.assign(label="decoy")])
    frame["name"] = frame["chrom"] + ":" + frame["site"].astype(str) + frame["strand"]
    counts = {
        **counts,
        "stranded_genes": len(genes),
        **exon_counts,
        "stranded_exons": len(exons),
        "sites": len(sites),
        "sites_off_chromosome": int((~inside).sum()),
        "sites_with_n": int((inside & ~clean).sum()),
        "positives": len(positives),
        "decoy_candidates": len(candidates),
        "decoys": len(decoys),
    }
    return frame, counts


def _promoter(
    spec: GenomicTask, genome: Mapping[str, str], annotation: Annotation
) -> tuple[pd.DataFrame, dict[str, int]]:
    config = WindowConfig(width=spec.window, max_n_fraction=0.0)
    positives, counts = tss_windows(genome, annotation.tss, config)
    tss = annotation.tss[annotation.tss["chrom"].isin(list(genome))]
    start, end = window_bounds(
        tss["tss"].to_numpy(), (tss["strand"] == "-").to_numpy(), spec.window
    )
    every_tss = pd.DataFrame({"chrom": tss["chrom"].to_numpy(), "start": start, "end": end})
    free = cut_at_blocks(subtract(acgt_runs(genome), every_tss), spec.split.block_size)
    rng = np.random.default_rng(spec.seed)
    negatives = draw_windows(free, spec.window, len(positives), rng)
    strand = np.where(rng.random(len(negatives)) < 0.5, "+", "-")
    seqs = [
        genome[c][s:e] for c, s, e in negatives[["chrom", "start", "end"]].itertuples(index=False)
    ]
    negatives = negatives.assign(
        strand=strand,
        sequence=[
            reverse_complement(q) if s == "-" else q for q, s in zip(seqs, strand, strict=True)
        ],
        name=negatives["chrom"]
        + ":"
        + negatives["start"].astype(str)
        + "-"
        + negatives["end"].astype(str)
        + strand,
    )
    frame = pd.concat([positives.assign(label="promoter"), negatives.assign(label="random")])
    return frame, {**counts, "positives": len(positives), "random": len(negatives)}
