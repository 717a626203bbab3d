"""Cut the real-data test fixture: a gene-dense slice of hg19 chr20 and the RefSeq lines in it.

    python tests/data/make_genome_fixture.py FOLDER

FOLDER holds the Debian files as ``dpkg -x`` lays them out (``usr/share/doc/...``), either
directly or one folder per package (``FOLDER/vt-examples/usr/...``, as the recipes' cache
``debian/extract`` does). Coordinates are shifted so the slice starts at 0; only features lying
wholly inside it are kept. Writes gzip files with a fixed timestamp, so reruns are identical.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

from d3lm.data.fasta import read_fasta
from d3lm.data.recipes import SOURCES, DebMember, sha256

CHROM, START, END = "chr20", 61_500_000, 63_000_000
OUT = Path(__file__).parent


def locate(folder: Path, member: DebMember) -> Path:
    for path in (folder / member.path, folder / member.package / member.path):
        if path.exists():
            if sha256(path) != member.sha256:
                sys.exit(f"{path}: SHA-256 differs from the pinned {member.sha256}")
            return path
    sys.exit(f"{folder}: no {member.path} (package {member.package})")


def write_gz(name: str, text: str) -> None:
    with open(OUT / name, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(text.encode())


def lines(path: Path) -> list[list[str]]:
    with gzip.open(path, "rt") as handle:
        return [line.split() for line in handle if line.strip()]


def main(folder: Path) -> None:
    paths = {key: locate(folder, member) for key, member in SOURCES.items() if key != "chrX"}
    seq = dict(read_fasta(paths["chr20"]))["20"][START:END]
    wrapped = "\n".join(seq[i : i + 60] for i in range(0, len(seq), 60))
    write_gz("chr20_slice.fa.gz", f">{CHROM} hg19 {CHROM}:{START}-{END}\n{wrapped}\n")
    for key in ("exons", "genes"):
        rows = [
            f"{CHROM}\t{int(f[1]) - START}\t{int(f[2]) - START}\n"
            for f in lines(paths[key])
            if f[0] == CHROM and int(f[1]) >= START and int(f[2]) <= END
        ]
        write_gz(f"refseq_{key}.bed.gz", "".join(rows))
    for key in ("tss", "tes"):
        rows = [
            f"{CHROM}\t{int(f[1]) - START}\t{f[2]}\n"
            for f in lines(paths[key])
            if f[0] == CHROM and START <= int(f[1]) < END
        ]
        write_gz(f"refseq_{key}.txt.gz", "".join(rows))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
