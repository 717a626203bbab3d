"""The registered tasks: DHS cell types, splice donors / acceptors and promoters (real data).

The genomic ones are ``d3lm.data.benchmarks`` windows built from Debian files fetched into the
shared cache (``recipes.fetch``), so the ``chromosomes`` corpus holds out exactly what these serve.
Their ``length`` and ``seed`` are parameters; a non-default one gets its own cache folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import ClassVar

import pandas as pd

from d3lm.data.benchmarks import CHROMOSOMES, CLASSES, Annotation, GenomicTask, genomic_windows
from d3lm.data.genome import read_chromosomes
from d3lm.data.recipes import fetch, prepare
from d3lm.params import Seed
from d3lm.registry import TASKS
from d3lm.tasks.base import Task, TaskInfo


@TASKS.register("dhs_celltype")
class DHSCellType(Task):
    """Which of 4 cell types a 200-bp DHS is accessible in (``dhs``'s labels and split).

    The split is the dataset's own by chromosome: valid chr1, test chr2."""

    name = "dhs_celltype"
    info = TaskInfo(
        name,
        ("GM12878", "HepG2", "K562", "hESCT0"),
        200,
        description="DHS cell type (DNA-Diffusion), 4 classes, 200 bp",
    )

    def build(self, cache_dir: Path) -> tuple[pd.DataFrame, dict[str, object]]:
        path = prepare("dhs", cache_dir)
        frame = pd.read_parquet(path)[["name", "chrom", "sequence", "label", "split"]]
        provenance = {
            "task": self.name,
            "source": "the dhs dataset recipe",
            "dataset": json.loads(path.with_name("source.json").read_text()),
            "splits": frame["split"].value_counts().to_dict(),
            "rows": len(frame),
        }
        return frame, provenance


@dataclass(frozen=True)
class _GenomicTask(Task):
    """A benchmarks window set served as a task."""

    length: int
    seed: Seed = 0

    def __post_init__(self) -> None:
        self.spec()  # a bad length fails when the task is built
        object.__setattr__(self, "info", replace(type(self).info, length=self.length))

    def spec(self) -> GenomicTask:
        return GenomicTask(self.name, self.length, self.seed)

    def build(self, cache_dir: Path) -> tuple[pd.DataFrame, dict[str, object]]:
        keys = ["tss", "tes", "exons", "genes", *CHROMOSOMES[self.name]]
        paths, files = fetch(keys, cache_dir)
        genome = read_chromosomes(paths[c] for c in CHROMOSOMES[self.name])
        frame, counts = genomic_windows(self.spec(), genome, Annotation.read(paths))
        provenance = {
            "task": self.name,
            "source": "apt-get download PACKAGE; dpkg -x",
            "files": files,
            "spec": asdict(self.spec()),
            "windows": "0-based half-open [start, end) on the forward strand; sequence in "
            "transcription direction (minus strand reverse-complemented)",
            "counts": counts,
            "splits": frame.groupby(["split", "label"]).size().unstack(fill_value=0).to_dict(),
            "rows": len(frame),
        }
        return frame, provenance


_SPLICE = (
    "windows in transcription direction with the exon/intron boundary between indices "
    "length // 2 - 1 and length // 2"
)


@TASKS.register("splice_donor")
@dataclass(frozen=True)
class SpliceDonor(_GenomicTask):
    """Is the centre a splice donor (exon end, GT at index length // 2) or a GT decoy? chr20."""

    length: int = 400
    name: ClassVar[str] = "splice_donor"
    info: ClassVar[TaskInfo] = TaskInfo(
        "splice_donor", CLASSES["splice_donor"], 400, description="RefSeq donor sites; " + _SPLICE
    )


@TASKS.register("splice_acceptor")
@dataclass(frozen=True)
class SpliceAcceptor(_GenomicTask):
    """Is the centre a splice acceptor (exon start, AG just before length // 2) or an AG decoy?"""

    length: int = 400
    name: ClassVar[str] = "splice_acceptor"
    info: ClassVar[TaskInfo] = TaskInfo(
        "splice_acceptor",
        CLASSES["splice_acceptor"],
        400,
        description="RefSeq acceptor sites; " + _SPLICE,
    )


@TASKS.register("promoter")
@dataclass(frozen=True)
class Promoter(_GenomicTask):
    """TSS-centred windows (TSS at index length // 2) against random genomic windows."""

    length: int = 300
    name: ClassVar[str] = "promoter"
    info: ClassVar[TaskInfo] = TaskInfo(
        "promoter",
        CLASSES["promoter"],
        300,
        description="RefSeq TSS at index length // 2 vs random windows, chr20 + chrX 0-70 Mb",
    )
