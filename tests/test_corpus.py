"""The ``chromosomes`` pretraining corpus: interval arithmetic on made genomes, no evaluation
window leaking into pretraining (checked by brute force), and the recipe built offline."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from genome_fixture import annotation, fake_apt, genome

from d3lm.config import load_config
from d3lm.data import recipes
from d3lm.data.benchmarks import GenomicTask, genomic_windows
from d3lm.data.corpus import CorpusConfig, corpus_windows
from d3lm.data.genome import WindowConfig
from d3lm.data.intervals import acgt_runs, cut_at_blocks, draw_windows, merge, overlaps, subtract
from d3lm.data.tables import load_table
from d3lm.errors import D3lmError

SPLIT = WindowConfig(block_size=100_000, valid_fraction=0.2, test_fraction=0.2)


def rows(frame):
    return [tuple(r) for r in frame[["chrom", "start", "end"]].itertuples(index=False)]


def test_interval_arithmetic_on_a_made_genome():
    assert rows(acgt_runs({"c": "NNACGTNNNAC"})) == [("c", 2, 6), ("c", 9, 11)]
    some = pd.DataFrame({"chrom": ["c", "c", "c"], "start": [5, 0, 8], "end": [9, 3, 12]})
    assert rows(merge(some)) == [("c", 0, 3), ("c", 5, 12)]
    free = subtract(pd.DataFrame({"chrom": ["c"], "start": [0], "end": [20]}), some)
    assert rows(free) == [("c", 3, 5), ("c", 12, 20)]
    assert rows(cut_at_blocks(free, 10)) == [("c", 3, 5), ("c", 12, 20)]
    assert rows(cut_at_blocks(pd.DataFrame({"chrom": ["c"], "start": [5], "end": [25]}), 10)) == [
        ("c", 5, 10),
        ("c", 10, 20),
        ("c", 20, 25),
    ]
    windows = draw_windows(free, 4, 5, np.random.default_rng(0))  # 5 starts fit: 12..16
    assert rows(windows) == [("c", s, s + 4) for s in range(12, 17)]
    assert overlaps(
        windows, pd.DataFrame({"chrom": ["c"], "start": [15], "end": [16]})
    ).tolist() == [
        True,
        True,
        True,
        True,
        False,
    ]
    with pytest.raises(D3lmError, match="only 5 windows of 4 bp fit"):
        draw_windows(free, 4, 6, np.random.default_rng(0))


def brute_force_overlap(a: pd.DataFrame, b: pd.DataFrame) -> int:
    """Pairs of windows sharing a base, by comparing every pair (no interval code involved)."""
    total = 0
    for chrom in set(a["chrom"]) & set(b["chrom"]):
        x, y = a[a["chrom"] == chrom], b[b["chrom"] == chrom]
        xs, xe = x["start"].to_numpy()[:, None], x["end"].to_numpy()[:, None]
        total += int(((xs < y["end"].to_numpy()) & (y["start"].to_numpy() < xe)).sum())
    return total


def test_no_evaluation_window_overlaps_a_pretraining_window():
    g, a = genome(), annotation()
    specs = [
        GenomicTask("splice_donor", split=SPLIT),
        GenomicTask("splice_acceptor", split=SPLIT),
        GenomicTask("splice_acceptor", length=600, split=SPLIT),
        GenomicTask("promoter", split=SPLIT),
    ]
    tasks = [genomic_windows(spec, g, a)[0] for spec in specs]
    held_out = pd.concat(tasks)[["chrom", "start", "end"]]
    corpus, counts = corpus_windows(g, held_out, CorpusConfig(length=1024, count=400, split=SPLIT))
    assert len(corpus) == counts["windows"] == 400
    assert counts["free_bp"] < counts["acgt_bp"] - 300_000  # the tasks took a real share
    for task in tasks:
        assert brute_force_overlap(corpus, task) == 0
    assert not corpus["sequence"].str.contains("N").any()
    assert (corpus["sequence"].str.len() == 1024).all()
    for one, other in (("train", "valid"), ("train", "test"), ("valid", "test")):
        split = corpus.set_index("split")
        assert brute_force_overlap(split.loc[[one]], split.loc[[other]]) == 0
    assert set(corpus["split"]) == {"train", "valid", "test"}
    again, _ = corpus_windows(g, held_out, CorpusConfig(length=1024, count=400, split=SPLIT))
    assert again.equals(corpus)


def test_recipe_takes_params_holds_out_configured_tasks_and_records_them(tmp_path, monkeypatch):
    fake_apt(monkeypatch, tmp_path)
    params = {"length": 512, "count": 300, "held_out": [{"task": "splice_acceptor", "length": 600}]}
    path = recipes.prepare("chromosomes", tmp_path / "cache", params)
    listed = json.dumps(params["held_out"], sort_keys=True)
    digest = hashlib.sha256(listed.encode()).hexdigest()[:12]
    assert path.parent.name == f"chromosomes-count=300-held_out={digest}-length=512"
    table = load_table("chromosomes", tmp_path / "cache", params=params)
    assert len(table) == 300 and table["sequence"].str.len().eq(512).all()
    assert {"chr20", "chrX"} == set(table["chrom"])
    source = json.loads(path.with_name("source.json").read_text())
    g, a = genome(), annotation()
    specs = [GenomicTask(t) for t in ("splice_donor", "splice_acceptor", "promoter")]
    specs.append(GenomicTask("splice_acceptor", length=600))
    g["chrX"] = recipes.read_chromosomes([fake_apt(monkeypatch, tmp_path)["chrX"]])["chrX"]
    windows = pd.concat([genomic_windows(s, g, a)[0] for s in specs])
    assert brute_force_overlap(table, windows) == 0
    merged = merge(windows)
    listing = "".join(f"{c}\t{s}\t{e}\n" for c, s, e in merged.itertuples(index=False))
    held = source["held_out"]
    assert held["windows"] == len(windows) and len(held["tasks"]) == 4
    assert held["bp"] == int((merged["end"] - merged["start"]).sum())
    assert held["sha256"] == hashlib.sha256(listing.encode()).hexdigest()
    assert [f["package"] for f in source["files"]].count("chromhmm-example") == 4
    assert source["rows"] == 300 and sum(source["splits"].values()) == 300


def test_recipe_params_are_checked_and_declared_in_base_yaml(tmp_path):
    assert dict(load_config().data.params) == {}
    with pytest.raises(D3lmError, match="unknown genomic task"):
        recipes.prepare("chromosomes", tmp_path, {"held_out": [{"task": "nope"}]})
    with pytest.raises(D3lmError, match="it accepts: length, count, seed, held_out"):
        recipes.prepare("chromosomes", tmp_path, {"width": 5})
    (tmp_path / "s.csv").write_text("sequence\nACGT\n")
    with pytest.raises(D3lmError, match="applies to dataset recipes"):
        load_table(str(tmp_path / "s.csv"), tmp_path, params={"length": 5})
