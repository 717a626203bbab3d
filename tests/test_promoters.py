"""The promoters recipe on made files: window cutting, centring, reverse complement, filters,
locus collapsing and leak-free splits (the real packages are never needed)."""

import gzip
import json

import numpy as np
import pandas as pd
import pytest
import torch

import d3lm.data.recipes as recipes
from d3lm.data.genome import (
    WindowConfig,
    read_chromosomes,
    read_tss,
    reverse_complement,
    tss_windows,
)
from d3lm.data.tables import load_table
from d3lm.evaluate import EvaluateOptions, evaluate_samples
from d3lm.metrics.features.kmer import KmerFeatures
from d3lm.metrics.features.oracle import OracleCNN, OracleFeatures
from d3lm.metrics.frechet import frechet_distance

#        0123456789012345
GOLDEN = "ACGTTGCAAGCTTCGA"


def write_fasta_gz(path, records):
    with gzip.open(path, "wt") as handle:
        for header, seq in records:
            handle.write(f">{header}\n")
            for i in range(0, len(seq), 7):
                handle.write(seq[i : i + 7].lower() + "\n")


def write_tss(path, rows):
    with gzip.open(path, "wt") as handle:
        handle.writelines(f"{c}\t{p}\t{s}\n" for c, p, s in rows)


def test_golden_windows_centre_and_reverse_complement(tmp_path):
    write_fasta_gz(tmp_path / "g.fa.gz", [("7  gi|1|ref|made|", GOLDEN)])
    write_tss(tmp_path / "tss.txt.gz", [("chr7", 5, "+"), ("chr7", 10, "-")])
    genome = read_chromosomes([tmp_path / "g.fa.gz"])
    assert genome == {"chr7": GOLDEN}
    frame, counts = tss_windows(genome, read_tss(tmp_path / "tss.txt.gz"), WindowConfig(width=6))
    # +: [2, 8), TSS base G at index 3; -: [8, 14) reverse-complemented, C -> G at index 3
    assert frame[["name", "start", "end", "sequence"]].values.tolist() == [
        ["chr7:5+", 2, 8, "GTTGCA"],
        ["chr7:10-", 8, 14, "GAAGCT"],
    ]
    assert counts == {"distinct_tss": 2, "off_chromosome": 0, "too_many_n": 0, "loci": 2}


def random_genome(rng, sizes):
    return {c: "".join(rng.choice(list("ACGT"), size=n)) for c, n in sizes.items()}


def test_windows_match_the_genome_and_never_overlap():
    rng = np.random.default_rng(0)
    genome = random_genome(rng, {"chr1": 60_000, "chr2": 40_000})
    genome["chr2"] = genome["chr2"][:20_000] + "N" * 500 + genome["chr2"][20_500:]
    n = 400
    tss = pd.DataFrame(
        {
            "chrom": rng.choice(["chr1", "chr2", "chr9"], size=n),
            "tss": rng.integers(0, 60_000, size=n),
            "strand": rng.choice(["+", "-"], size=n),
        }
    )
    tss = pd.concat([tss, tss.head(20)], ignore_index=True)  # exact duplicates
    config = WindowConfig(width=200, max_n_fraction=0.1, block_size=2_000)
    frame, counts = tss_windows(genome, tss, config)
    assert counts["loci"] == len(frame) > 50
    for row in frame.itertuples():
        fwd = genome[row.chrom][row.start : row.end]
        assert row.end - row.start == 200 and row.start >= 0 and row.end <= len(genome[row.chrom])
        assert row.sequence == (fwd if row.strand == "+" else reverse_complement(fwd))
        base = genome[row.chrom][row.tss]
        assert row.sequence[100] == (base if row.strand == "+" else reverse_complement(base))
        assert row.sequence.count("N") <= 20
    assert counts["too_many_n"] > 0 and counts["off_chromosome"] > 0
    assert not (frame["chrom"] == "chr9").any()
    # kept windows are disjoint, so no locus can sit in two splits
    for _, group in frame.groupby("chrom"):
        group = group.sort_values("start")
        assert (group["start"].to_numpy()[1:] >= group["end"].to_numpy()[:-1]).all()
    blocks = frame.assign(block=frame["start"] // 2_000).groupby(["chrom", "block"])["split"]
    assert (blocks.nunique() == 1).all()
    assert set(frame["split"]) == {"train", "valid", "test"}
    assert frame["n_tss"].sum() + counts["off_chromosome"] + counts["too_many_n"] == len(
        tss[tss["chrom"] != "chr9"].drop_duplicates()
    )


def test_overlapping_tss_collapse_to_the_leftmost_window():
    genome = {"chr1": "ACGT" * 100}
    tss = pd.DataFrame(
        {
            "chrom": ["chr1"] * 5,
            "tss": [100, 105, 105, 112, 200],  # 100..112 overlap (a bidirectional pair too)
            "strand": ["-", "+", "+", "-", "+"],
        }
    )
    frame, counts = tss_windows(genome, tss, WindowConfig(width=20))
    assert frame["name"].tolist() == ["chr1:100-", "chr1:200+"]
    assert frame["n_tss"].tolist() == [3, 1]
    assert counts["distinct_tss"] == 4  # the exact duplicate is gone before clustering


def test_bad_tss_line_names_file_and_line(tmp_path):
    path = tmp_path / "tss.txt"
    path.write_text("chr1\t10\t+\nchr1\tten\t-\n")
    with pytest.raises(ValueError, match=r"tss\.txt: line 2"):
        read_tss(path)


def test_recipe_writes_parquet_with_coordinates_and_provenance(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    files = {
        recipes.PromotersRecipe.tss: tmp_path / "tss.txt.gz",
        recipes.PromotersRecipe.genome[0]: tmp_path / "20.fa.gz",
        recipes.PromotersRecipe.genome[1]: tmp_path / "x.fa.gz",
    }
    genome = random_genome(rng, {"20": 9_000, "X": 9_000})
    write_fasta_gz(files[recipes.PromotersRecipe.genome[0]], [("20", genome["20"])])
    write_fasta_gz(files[recipes.PromotersRecipe.genome[1]], [("X  gi|1|", genome["X"])])
    rows = [(c, p, "+") for c in ("chr20", "chrX") for p in range(1_500, 8_000, 700)]
    write_tss(files[recipes.PromotersRecipe.tss], [*rows, ("chr1", 5_000, "+")])
    monkeypatch.setattr(recipes, "apt_member", lambda m, workdir: (files[m], "1.0-test"))
    monkeypatch.setattr(
        recipes.PromotersRecipe, "config", WindowConfig(width=600, block_size=1_000)
    )
    path = recipes.prepare("promoters", tmp_path / "cache")
    table = load_table("promoters", tmp_path / "cache")
    assert len(table) == len(rows) == len(pd.read_parquet(path))
    assert {"chrom", "start", "end", "strand", "tss", "sequence", "split"} <= set(table.columns)
    assert (table["end"] - table["start"] == 600).all()
    assert table["sequence"].str.len().eq(600).all()
    source = json.loads(path.with_name("source.json").read_text())
    assert [f["package"] for f in source["files"]] == [
        "chromhmm-example",
        "vt-examples",
        "smalt-examples",
    ]
    assert source["counts"]["loci"] == source["rows"] == len(rows)
    assert sum(source["splits"].values()) == len(rows)


def test_oracle_and_kmer_features_take_promoter_length_and_mismatch_is_an_error():
    """The oracle CNN pools globally, so it takes 2,048 bp; a length mismatch is a clear error."""
    torch.manual_seed(0)
    rng = np.random.default_rng(2)
    reference = ["".join(r) for r in rng.choice(list("ACGT"), size=(24, 2048))]
    samples = ["".join(r) for r in rng.choice(list("ACGT"), size=(6, 2048))]
    extractors = {"kmer": KmerFeatures(ks=(1, 2)), "oracle": OracleFeatures(model=OracleCNN(4))}
    for name, extractor in extractors.items():
        feats = extractor(samples)
        assert feats.shape == (6, extractor.dim) and torch.isfinite(feats).all(), name
        assert frechet_distance(feats, extractor(reference)) > 0
    options = EvaluateOptions(baselines={"uniform": {}}, motifs=False, progress=False)
    with pytest.raises(ValueError, match="samples are 200 bp but every reference sequence is 2048"):
        evaluate_samples([s[:200] for s in samples], reference, None, extractors, options)
