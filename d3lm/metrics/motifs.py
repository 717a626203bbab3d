"""Motif occurrence rates: JASPAR 2024 CORE vertebrate PWMs scanned on both strands.

A hit is a window whose log-odds score (base 2, uniform background, pseudocount 0.8 spread over
the four bases) reaches ``threshold`` of the way from the PWM's minimum to its maximum score
(the "relative score" of Biostrings ``matchPWM`` / TFBSTools, default 80 %). Each strand counts
separately; rates are hits per kb of ACGT sequence. Sets are compared by the Pearson correlation
of their per-motif rates and by the JS divergence of the rates normalised to distributions, so a
generator that keeps composition but loses motif grammar (a dinucleotide shuffle) scores lower
than a second real set.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from d3lm.metrics.composition import js_divergence
from d3lm.metrics.features.base import one_hot


@dataclass(frozen=True)
class Motif:
    """One position frequency matrix: ``counts`` (4, width) in ACGT order."""

    matrix_id: str
    name: str
    counts: np.ndarray


@functools.lru_cache(maxsize=4)
def jaspar_motifs(release: str = "JASPAR2024", tax_group: str = "vertebrates") -> tuple[Motif, ...]:
    """CORE motifs of ``tax_group`` (latest versions) from pyjaspar's bundled offline database."""
    from pyjaspar import jaspardb  # slow to import; only motif scans need it

    fetched = jaspardb(release=release).fetch_motifs(
        collection="CORE", tax_group=[tax_group], all_versions=False
    )
    return tuple(
        Motif(m.matrix_id, m.name, np.array([m.counts[b] for b in "ACGT"], dtype=np.float64))
        for m in fetched
    )


def log_odds(counts: np.ndarray, pseudocount: float = 0.8) -> np.ndarray:
    """Base-2 log-odds (4, width) against a uniform background."""
    probs = (counts + pseudocount / 4) / (counts.sum(0, keepdims=True) + pseudocount)
    return np.log2(probs / 0.25)


class MotifScanner:
    """Counts motif hits per sequence set with one conv1d per motif width (both strands at once)."""

    def __init__(
        self, motifs: Sequence[Motif] | None = None, threshold: float = 0.8, batch_size: int = 256
    ) -> None:
        self.motifs = tuple(jaspar_motifs() if motifs is None else motifs)
        self.threshold, self.batch_size = threshold, batch_size
        self.groups: list[tuple[np.ndarray, torch.Tensor, torch.Tensor]] = []
        by_width: dict[int, list[int]] = {}
        for index, motif in enumerate(self.motifs):
            by_width.setdefault(motif.counts.shape[1], []).append(index)
        for members in by_width.values():
            pwms = np.stack([log_odds(self.motifs[i].counts) for i in members])
            low, high = pwms.min(1).sum(1), pwms.max(1).sum(1)
            cutoff = low + threshold * (high - low)
            both = np.concatenate([pwms, pwms[:, ::-1, ::-1]])  # reverse complement
            self.groups.append(
                (
                    np.array(members),
                    torch.from_numpy(both.copy()).float(),
                    torch.from_numpy(np.concatenate([cutoff, cutoff])).float() - 1e-4,
                )
            )

    def counts(self, seqs: Sequence[str]) -> np.ndarray:
        """Hits per motif (n_motifs,) summed over the set and both strands."""
        totals = np.zeros(len(self.motifs))
        for start in range(0, len(seqs), self.batch_size):
            x = one_hot(seqs[start : start + self.batch_size])
            unknown = (x.amax(1, keepdim=True) < 1).float()  # N or padding: no hit may touch it
            for members, weights, cutoff in self.groups:
                scores = torch.nn.functional.conv1d(x, weights)
                blocked = torch.nn.functional.conv1d(unknown, torch.ones(1, 1, weights.shape[2]))
                scores.masked_fill_(blocked > 0, -torch.inf)
                hits = (scores >= cutoff[None, :, None]).float().sum((0, 2)).double().numpy()
                half = len(members)
                totals[members] += hits[:half] + hits[half:]
        return totals

    def rates(self, seqs: Sequence[str]) -> np.ndarray:
        """Hits per kb of ACGT sequence, per motif."""
        bases = sum(sum(s.count(b) for b in "ACGT") for s in seqs)
        return self.counts(seqs) * 1000 / max(bases, 1)


def compare_rates(real: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """``motif_corr`` (Pearson r of per-motif rates) and ``motif_js`` (JS of normalised rates)."""
    corr = float(np.corrcoef(real, other)[0, 1]) if real.std() > 0 and other.std() > 0 else 0.0
    return {"motif_corr": corr, "motif_js": js_divergence(real, other)}
