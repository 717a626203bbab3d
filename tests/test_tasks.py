"""Labelled tasks: splice and promoter biology on a real hg19 slice, the registered tasks built
offline, and users' labelled files (formats, hash split, bad labels named)."""

import json

import numpy as np
import pandas as pd
import pytest
from genome_fixture import annotation, fake_apt, genome
from registered import examples

from d3lm.data.benchmarks import GenomicTask, genomic_windows
from d3lm.data.fasta import write_fasta
from d3lm.data.genome import WindowConfig
from d3lm.errors import D3lmError
from d3lm.plugins import catalogue
from d3lm.registry import TASKS
from d3lm.tasks import load_task
from d3lm.tasks.base import METRICS, Task, assign_classes
from d3lm.tasks.genomic import _GenomicTask

SPLIT = WindowConfig(block_size=100_000)


@pytest.fixture(scope="module")
def windows():
    g, a = genome(), annotation()
    return {
        task: genomic_windows(GenomicTask(task, split=SPLIT), g, a)
        for task in ("splice_donor", "splice_acceptor", "promoter")
    }


def dinucleotide(frame, at):
    return frame["sequence"].str[at : at + 2]


def test_true_donors_have_gt_and_acceptors_ag_decoys_always(windows):
    """400 bp, boundary between indices 199 and 200: donor GT at [200, 202), acceptor AG at
    [198, 200); decoys carry the same dinucleotide at the same index by construction."""
    for task, at, motif in (("splice_donor", 200, "GT"), ("splice_acceptor", 198, "AG")):
        frame, counts = windows[task]
        sites, decoys = frame[frame["label"] == "site"], frame[frame["label"] == "decoy"]
        assert len(sites) >= 100 and len(decoys) == len(sites) == counts["positives"]
        assert (dinucleotide(sites, at) == motif).mean() >= 0.95, task
        assert (dinucleotide(decoys, at) == motif).all(), task
        assert frame["sequence"].str.len().eq(400).all()
        assert frame["name"].is_unique


def test_promoter_windows_are_richer_in_cpg_than_random_ones(windows):
    def cpg_observed_over_expected(seq):
        c, g = seq.count("C"), seq.count("G")
        return seq.count("CG") * len(seq) / max(c * g, 1)

    frame, counts = windows["promoter"]
    by_label = frame.groupby("label")["sequence"].apply(
        lambda s: np.mean([cpg_observed_over_expected(q) for q in s])
    )
    assert counts["positives"] == counts["random"] >= 20
    assert by_label["promoter"] > 1.5 * by_label["random"]
    assert (
        frame["sequence"].str.len().eq(300).all() and not frame["sequence"].str.contains("N").any()
    )


def test_overlapping_task_windows_share_a_split(windows):
    for frame, _ in windows.values():
        frame = frame.sort_values("start")
        for a, b in zip(frame.itertuples(), frame.iloc[1:].itertuples(), strict=False):
            if b.start < a.end:
                assert a.split == b.split


def test_registered_tasks_build_offline_once_with_provenance(tmp_path, monkeypatch):
    fake_apt(monkeypatch, tmp_path)  # the slice is 1.5 Mb: 100-kb blocks give every split
    monkeypatch.setattr(
        _GenomicTask,
        "spec",
        lambda self: GenomicTask(self.name, self.length, self.seed, split=SPLIT),
    )
    table = load_task("splice_acceptor", tmp_path / "cache")
    assert table.info.classes == ("decoy", "site") and table.info.length == 400
    assert table.source == tmp_path / "cache/tasks/splice_acceptor/splice_acceptor.parquet"
    assert {"name", "sequence", "label", "y", "split", "chrom", "start", "end", "strand"} <= set(
        table.frame.columns
    )
    assert (table.frame["y"] == (table.frame["label"] == "site")).all()
    source = json.loads(table.source.with_name("source.json").read_text())
    assert {f["package"] for f in source["files"]} == {"chromhmm-example", "vt-examples"}
    assert all(len(f["sha256"]) == 64 for f in source["files"])
    assert source["rows"] == len(table.frame)

    monkeypatch.setattr("d3lm.data.recipes.apt_member", pytest.fail)  # cached: fetches nothing
    assert load_task("splice_acceptor", tmp_path / "cache").frame.equals(table.frame)
    fake_apt(monkeypatch, tmp_path)
    longer = load_task("splice_acceptor", tmp_path / "cache", params={"length": 600})
    assert longer.source.parent.name == "splice_acceptor-length=600"
    assert longer.info.length == 600 and longer.frame["sequence"].str.len().eq(600).all()
    promoter = load_task("promoter", tmp_path / "cache")
    assert set(promoter.frame["label"]) == {"promoter", "random"}


def test_dhs_celltype_uses_the_dhs_table_and_its_split(tmp_path):
    dhs = tmp_path / "cache" / "dhs"
    dhs.mkdir(parents=True)
    pd.DataFrame(
        {
            "name": ["a", "b", "c", "d"],
            "chrom": ["chr3", "chr4", "chr1", "chr2"],
            "sequence": ["ACGT"] * 4,
            "label": ["K562", "hESCT0", "K562", "hESCT0"],
            "split": ["train", "train", "valid", "test"],
        }
    ).to_parquet(dhs / "dhs.parquet")
    (dhs / "source.json").write_text('{"recipe": "dhs"}')
    table = load_task("dhs_celltype", tmp_path / "cache", num_classes=4)
    assert table.info.classes == ("GM12878", "HepG2", "K562", "hESCT0")
    assert table.frame["y"].tolist() == [2, 3, 2, 3]
    assert table.frame["split"].tolist() == ["train", "train", "valid", "test"]


@pytest.mark.parametrize("case", examples("task"))
def test_every_registered_task_declares_what_a_run_needs(case):
    """Built offline (sources are fetched only by ``prepare``): its registered name is the name
    its cache folder and rows carry, at least two distinct classes, a known primary metric."""
    name, params = case
    task = TASKS.build(name, params)
    assert isinstance(task, Task)
    assert task.name == task.info.name == name
    assert task.folder.split("-", 1)[0] == name
    classes = task.info.classes
    assert len(classes) >= 2 and len(set(classes)) == len(classes)
    assert all(isinstance(c, str) and c for c in classes)
    assert task.info.metric in METRICS
    assert params.get("length", task.info.length) == task.info.length


def test_tasks_are_listed_as_plugins():
    assert {"dhs_celltype", "splice_donor", "splice_acceptor", "promoter"} <= set(
        catalogue()["task"]
    )


# --- user tables -------------------------------------------------------------------------------

NAMES = [f"r{i}" for i in range(60)]
SEQS = ["ACGTACGTAA", "GGCCNNAT", "TTTTACGA"] * 20
LABELS = ["2", "10", "1"] * 20


def write_all_formats(tmp_path, frame):
    paths = []
    for suffix in ("csv", "tsv", "parquet"):
        path = tmp_path / f"t.{suffix}"
        if suffix == "parquet":
            frame.to_parquet(path)
        else:
            frame.to_csv(path, sep="," if suffix == "csv" else "\t", index=False)
        paths.append(path)
    fasta = tmp_path / "t.fa"
    tags = [
        " ".join(f"{k}={row[k]}" for k in ("label", "split") if k in frame and not pd.isna(row[k]))
        for _, row in frame.iterrows()
    ]
    write_fasta(
        fasta,
        [(f"{n} {t}", s) for n, t, s in zip(frame["name"], tags, frame["sequence"], strict=True)],
    )
    return [*paths, fasta]


def test_every_format_round_trips_with_integer_labels_sorted_numerically(tmp_path):
    frame = pd.DataFrame({"name": NAMES, "sequence": SEQS, "label": [int(x) for x in LABELS]})
    tables = [
        load_task(str(p), tmp_path, valid_fraction=0.2, test_fraction=0.2)
        for p in write_all_formats(tmp_path, frame)
    ]
    for table in tables:
        assert table.info.classes == ("1", "2", "10")
        pd.testing.assert_frame_equal(table.frame, tables[0].frame)
    first = tables[0].frame
    assert first["label"].tolist() == LABELS and set(first["split"]) == {"train", "valid", "test"}
    assert first["y"].tolist() == [1, 2, 0] * 20
    assert tables[0].info.length is None and tables[0].info.metric == "mcc"


def test_hash_split_is_deterministic_and_keyed_by_name_or_sequence(tmp_path):
    named = pd.DataFrame({"name": NAMES, "sequence": SEQS, "label": ["a", "b", "c"] * 20})
    named.to_csv(tmp_path / "named.csv", index=False)
    a = load_task(str(tmp_path / "named.csv"), tmp_path).frame
    named.iloc[::-1].to_csv(tmp_path / "reversed.csv", index=False)
    b = load_task(str(tmp_path / "reversed.csv"), tmp_path).frame
    assert dict(zip(a["name"], a["split"], strict=True)) == dict(
        zip(b["name"], b["split"], strict=True)
    )
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), size=20)) for _ in range(200)]
    pd.DataFrame({"sequence": seqs + seqs[:50], "label": ["x", "y"] * 125}).to_csv(
        tmp_path / "anon.csv", index=False
    )
    anon = load_task(str(tmp_path / "anon.csv"), tmp_path).frame
    assert (anon["split"].iloc[200:].to_numpy() == anon["split"].iloc[:50].to_numpy()).all()


BAD = [
    ({"label": ["a", None, "b", "a"]}, "record 'r1' \\(row 2\\): missing label"),
    (
        {"label": ["a", "b", "c", "a"], "split": ["train", "train", "test", "train"]},
        "record 'r2' \\(row 3\\): class 'c' is in the test split but never in train",
    ),
    ({"split": ["train", "dev", "train", "train"]}, "record 'r1': split 'dev' is not one of"),
    ({"split": ["test", "valid", "test", "test"]}, "the train split is empty"),
    ({"sequence": ["ACGT", "ACGT", "ACXT", "ACGT"]}, "record 'r2': invalid character 'X'"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_bad_labels_and_records_are_named(tmp_path, change, message):
    frame = pd.DataFrame(
        {
            "name": ["r0", "r1", "r2", "r3"],
            "sequence": ["ACGT"] * 4,
            "label": ["a", "b", "a", "b"],
            "split": ["train"] * 4,
        }
    )
    frame = frame.assign(**change)
    for path in write_all_formats(tmp_path, frame):
        with pytest.raises(D3lmError, match=f"{path.name}: {message}"):
            load_task(str(path), tmp_path)


def test_out_of_range_and_unknown_labels_are_named(tmp_path):
    frame = pd.DataFrame({"name": ["r0", "r1", "r2"], "sequence": ["ACGT"] * 3, "label": [0, 3, 1]})
    for path in write_all_formats(tmp_path, frame):
        with pytest.raises(
            D3lmError,
            match=rf"{path.name}: record 'r1' \(row 2\): label 3 is out of range for num_classes=3",
        ):
            load_task(str(path), tmp_path, num_classes=3)
    negative = frame.assign(label=[0, -1, 1])
    negative.to_csv(tmp_path / "neg.csv", index=False)
    with pytest.raises(
        D3lmError, match=r"neg.csv: record 'r1' \(row 2\): label -1 is out of range"
    ):
        load_task(str(tmp_path / "neg.csv"), tmp_path, num_classes=2)
    registered = frame.assign(label=["site", "maybe", "decoy"], split="train")
    with pytest.raises(
        D3lmError,
        match=r"task.parquet: record 'r1' \(row 2\): label 'maybe' is not one of the task's "
        r"classes \(decoy, site\)",
    ):
        assign_classes(registered, ("decoy", "site"), "task.parquet")


def test_fasta_without_label_and_unknown_spec_are_errors(tmp_path):
    (tmp_path / "u.fa").write_text(">a label=x\nACGT\n>b split=train\nACGT\n")
    with pytest.raises(D3lmError, match=r"u.fa: record 'b' \(row 2\): missing label"):
        load_task(str(tmp_path / "u.fa"), tmp_path)
    with pytest.raises(D3lmError, match="neither a file nor a registered task"):
        load_task("no_such_task", tmp_path)
