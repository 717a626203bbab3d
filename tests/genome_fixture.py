"""The real-data fixture (tests/data, cut by make_genome_fixture.py) and a fake apt for recipes."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from d3lm.data import recipes
from d3lm.data.benchmarks import Annotation
from d3lm.data.genome import read_chromosomes

DATA = Path(__file__).parent / "data"
FILES = {
    "tss": DATA / "refseq_tss.txt.gz",
    "tes": DATA / "refseq_tes.txt.gz",
    "exons": DATA / "refseq_exons.bed.gz",
    "genes": DATA / "refseq_genes.bed.gz",
    "chr20": DATA / "chr20_slice.fa.gz",
}


def annotation() -> Annotation:
    return Annotation.read(FILES)


def genome() -> dict[str, str]:
    return read_chromosomes([FILES["chr20"]])


def fake_apt(monkeypatch, tmp_path: Path) -> dict[str, Path]:
    """Serve every ``recipes.SOURCES`` member from the fixture (chrX: 200 kb of random DNA with
    an N run), so the recipes run offline; returns the files by source key."""
    rng = np.random.default_rng(7)
    chrx = "".join(rng.choice(list("ACGT"), size=200_000))
    chrx = chrx[:50_000] + "N" * 5_000 + chrx[55_000:]
    path = tmp_path / "x.fa.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(f">X  gi|made|\n{chrx}\n")
    files = {**FILES, "chrX": path}
    by_member = {recipes.SOURCES[key]: files[key] for key in files}
    monkeypatch.setattr(recipes, "apt_member", lambda m, workdir: (by_member[m], "1.0-test"))
    return files
