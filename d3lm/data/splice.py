"""Splice donor / acceptor windows from unstranded RefSeq exon and gene BEDs (pure functions).

The Debian ChromHMM files give exons and genes as bare ``chrom, start, end``; strands come from
the TSS/TES anchor files: a gene ``[s, e)`` is ``+`` when ``(chrom, s, +)`` is a TSS or
``(chrom, e - 1, +)`` a TES, ``-`` when ``(chrom, e - 1, -)`` is a TSS or ``(chrom, s, -)`` a TES;
genes with no or both strands are dropped. An exon takes the strand of every gene containing it
(dropped if they disagree or none does).

A site is the first base after the exon/intron boundary in transcription direction, so every
window (``genome.window_bounds``, minus strand reverse-complemented) has the boundary between
indices ``length // 2 - 1`` and ``length // 2``: a donor's GT at ``[length // 2, length // 2 + 2)``,
an acceptor's AG at ``[length // 2 - 2, length // 2)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import pandas as pd

from d3lm.data.genome import normalise_chrom, reverse_complement, text_fields
from d3lm.data.intervals import merge
from d3lm.errors import D3lmError

#: kind -> (motif in transcription direction, its offset from the site)
MOTIFS = {"donor": ("GT", 0), "acceptor": ("AG", -2)}


def read_bed(path: str | os.PathLike[str]) -> pd.DataFrame:
    """``chrom, start, end`` of a BED(.gz) file (further columns, track and # lines ignored)."""
    rows = []
    for lineno, line, fields in text_fields(path):
        if fields[0] in ("track", "browser") or fields[0].startswith("#"):
            continue
        if len(fields) < 3 or not (fields[1].isdigit() and fields[2].isdigit()):
            raise D3lmError(f"{path}: line {lineno}: expected 'chrom start end', got {line!r}")
        rows.append((normalise_chrom(fields[0]), int(fields[1]), int(fields[2])))
    return pd.DataFrame(rows, columns=["chrom", "start", "end"]).drop_duplicates()


def gene_strands(
    genes: pd.DataFrame, tss: pd.DataFrame, tes: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Genes with a ``strand`` column, and counts of those with none or both."""
    anchors = {
        (kind, c, p, s)
        for kind, frame in (("tss", tss), ("tes", tes))
        for c, p, s in frame[["chrom", "tss", "strand"]].itertuples(index=False)
    }
    plus, minus = [], []
    for chrom, start, end in genes[["chrom", "start", "end"]].itertuples(index=False):
        plus.append(
            ("tss", chrom, start, "+") in anchors or ("tes", chrom, end - 1, "+") in anchors
        )
        minus.append(
            ("tss", chrom, end - 1, "-") in anchors or ("tes", chrom, start, "-") in anchors
        )
    plus_, minus_ = np.array(plus, dtype=bool), np.array(minus, dtype=bool)
    counts = {
        "genes": len(genes),
        "genes_without_strand": int((~plus_ & ~minus_).sum()),
        "genes_with_both_strands": int((plus_ & minus_).sum()),
    }
    keep = plus_ ^ minus_
    stranded = genes[keep].assign(strand=np.where(plus_[keep], "+", "-"))
    return stranded.reset_index(drop=True), counts


def exon_strands(exons: pd.DataFrame, genes: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Exons with the strand of the stranded ``genes`` containing them, and what was dropped."""
    exons = exons.reset_index(drop=True)
    plus, minus = np.zeros(len(exons), dtype=bool), np.zeros(len(exons), dtype=bool)
    for chrom, rows in exons.groupby("chrom"):
        g = genes[genes["chrom"] == chrom]
        inside = (g["start"].to_numpy()[None, :] <= rows["start"].to_numpy()[:, None]) & (
            rows["end"].to_numpy()[:, None] <= g["end"].to_numpy()[None, :]
        )
        on_plus = (g["strand"] == "+").to_numpy()[None, :]
        plus[rows.index] = (inside & on_plus).any(axis=1)
        minus[rows.index] = (inside & ~on_plus).any(axis=1)
    counts = {
        "exons": len(exons),
        "exons_without_gene": int((~plus & ~minus).sum()),
        "exons_in_genes_of_both_strands": int((plus & minus).sum()),
    }
    keep = plus ^ minus
    stranded = exons[keep].assign(strand=np.where(plus[keep], "+", "-"))
    return stranded.reset_index(drop=True), counts


def splice_sites(exons: pd.DataFrame, genes: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Distinct internal ``chrom, site, strand`` of stranded exons: an acceptor is an exon's 5'
    end unless a gene starts there, a donor its 3' end unless a gene ends there."""
    plus = (exons["strand"] == "+").to_numpy()
    start, end = exons["start"].to_numpy(), exons["end"].to_numpy()
    gene_ends = {(c, s, e) for c, s, e in genes[["chrom", "strand", "end"]].itertuples(index=False)}
    gene_starts = {
        (c, s, b) for c, s, b in genes[["chrom", "strand", "start"]].itertuples(index=False)
    }
    chroms = exons["chrom"].to_numpy()
    if kind == "acceptor":  # + : exon start s; - : exon end e (a gene start there is e - 1)
        site = np.where(plus, start, end - 1)
        outer = [
            (c, "+", s) in gene_starts if p else (c, "-", e) in gene_ends
            for c, p, s, e in zip(chroms, plus, start, end, strict=True)
        ]
    elif kind == "donor":  # + : first intron base e; - : s - 1
        site = np.where(plus, end, start - 1)
        outer = [
            (c, "+", e) in gene_ends if p else (c, "-", s) in gene_starts
            for c, p, s, e in zip(chroms, plus, start, end, strict=True)
        ]
    else:
        raise ValueError(f"splice site kind must be donor or acceptor, got {kind!r}")
    frame = pd.DataFrame({"chrom": chroms, "site": site, "strand": exons["strand"].to_numpy()})
    frame = frame[~np.array(outer, dtype=bool)].drop_duplicates()
    return frame.sort_values(["chrom", "site", "strand"]).reset_index(drop=True)


def motif_sites(seq: str, strand: str, kind: str) -> np.ndarray:
    """Every site on ``strand`` of ``seq`` whose window would hold the kind's motif (GT / AG) at
    the index a true site has it."""
    motif, offset = MOTIFS[kind]
    target = motif if strand == "+" else reverse_complement(motif)
    codes = np.frombuffer(seq.encode(), dtype=np.uint8)
    hits = np.flatnonzero((codes[:-1] == ord(target[0])) & (codes[1:] == ord(target[1])))
    # - strand: the motif's first base (transcription order) is the forward base j + 1
    return hits - offset if strand == "+" else hits + 1 + offset


def boundary_distance(chrom_exons: pd.DataFrame, site: np.ndarray, strand: str) -> np.ndarray:
    """Distance (bp) from each site's boundary to the nearest annotated exon boundary."""
    bounds = np.unique(np.concatenate([chrom_exons["start"], chrom_exons["end"]]))
    forward = site if strand == "+" else site + 1  # the boundary sits before this forward base
    if not len(bounds):
        return np.full(len(site), np.iinfo(np.int64).max)
    k = np.searchsorted(bounds, forward)
    left = np.abs(forward - bounds[np.maximum(k - 1, 0)])
    right = np.abs(bounds[np.minimum(k, len(bounds) - 1)] - forward)
    return np.minimum(left, right)


def decoy_sites(
    genome: Mapping[str, str],
    exons: pd.DataFrame,
    genes: pd.DataFrame,
    sites: pd.DataFrame,
    kind: str,
    margin: int,
) -> pd.DataFrame:
    """Candidate decoys: motif sites on the strand of genes holding a true site of ``kind``,
    more than ``margin`` bp from any annotated exon boundary (of either strand)."""
    rows = []
    for (chrom, strand), g in genes.groupby(["chrom", "strand"]):
        if chrom not in genome:
            continue
        here = sites[(sites["chrom"] == chrom) & (sites["strand"] == strand)]["site"].to_numpy()
        gs, ge = g["start"].to_numpy(), g["end"].to_numpy()
        used = ((gs[None, :] <= here[:, None]) & (here[:, None] < ge[None, :])).any(axis=0)
        if not used.any():
            continue
        spans = merge(g[used])
        candidates = motif_sites(genome[chrom], strand, kind)
        k = np.searchsorted(spans["start"].to_numpy(), candidates, side="right") - 1
        inside = (k >= 0) & (candidates < spans["end"].to_numpy()[np.maximum(k, 0)])
        candidates = candidates[inside]
        far = boundary_distance(exons[exons["chrom"] == chrom], candidates, strand)
        rows.append(pd.DataFrame({"chrom": chrom, "site": candidates[far > margin]}))
        rows[-1]["strand"] = strand
    if not rows:
        return pd.DataFrame(columns=["chrom", "site", "strand"])
    return pd.concat(rows).sort_values(["chrom", "site", "strand"]).reset_index(drop=True)
