import gzip
import zipfile

import pandas as pd
import pytest

from d3lm.data import recipes
from d3lm.data.fasta import read_fasta, write_fasta
from d3lm.data.tables import hash_split, load_table
from d3lm.tokenizers import NT6merTokenizer


def test_fasta_round_trip_plain_and_gzip(tmp_path):
    records = [("a", "ACGT" * 30), ("b desc", "acgtn"), ("c", "G")]
    path = tmp_path / "x.fa"
    write_fasta(path, records, width=7)
    got = list(read_fasta(path))
    assert got == [("a", "ACGT" * 30), ("b", "ACGTN"), ("c", "G")]
    gz = tmp_path / "x.fa.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert list(read_fasta(gz)) == got


def test_fasta_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.fa"
    path.write_text("ACGT\n>a\nACGT\n")
    with pytest.raises(ValueError, match=r"bad.fa: line 1: sequence data before"):
        list(read_fasta(path))


def test_tables_from_every_format_validate_and_split(tmp_path):
    seqs = ["ACGTACGT", "acgtnn", "GGGG"] * 20
    names = [f"r{i}" for i in range(len(seqs))]
    write_fasta(tmp_path / "s.fasta", zip(names, seqs, strict=True))
    pd.DataFrame({"name": names, "sequence": seqs}).to_csv(tmp_path / "s.csv", index=False)
    a = load_table(str(tmp_path / "s.fasta"), tmp_path, 0.2, 0.2)
    b = load_table(str(tmp_path / "s.csv"), tmp_path, 0.2, 0.2)
    pd.testing.assert_frame_equal(
        a[["name", "sequence", "split"]], b[["name", "sequence", "split"]]
    )
    assert set(a["split"]) == {"train", "valid", "test"}
    assert a["sequence"].str.isupper().all()


def test_hash_split_is_stable_and_proportional():
    names = pd.Series([f"chr1:{i}" for i in range(20000)])
    split = hash_split(names, 0.1, 0.05)
    assert split.equals(hash_split(names, 0.1, 0.05))
    share = split.value_counts(normalize=True)
    assert abs(share["valid"] - 0.1) < 0.01 and abs(share["test"] - 0.05) < 0.01


def test_bad_records_are_named(tmp_path):
    pd.DataFrame(
        {"name": ["ok", "bad"], "sequence": ["ACGT", "ACRT"], "split": ["train", "train"]}
    ).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(
        ValueError, match=r"t.csv: record 'bad': invalid character 'R' at position 3"
    ):
        load_table(str(tmp_path / "t.csv"), tmp_path)
    with pytest.raises(FileNotFoundError, match="neither a file nor a known dataset"):
        load_table("no-such-thing", tmp_path)


def test_dhs_recipe_converts_the_pinned_file_and_rejects_a_changed_one(tmp_path, monkeypatch):
    header = "dhs_id\tchr\tsequence\tTAG\tdata_label\textra\n"
    rows = [
        "c1_1\tchr1\tacgt\tK562_ENCLB843GMH\tvalidation\t0\n",
        "c3_1\tchr3\tGGCC\thESCT0_ENCLB449ZZZ\ttraining\t1\n",
        "c2_1\tchr2\tTTAA\tHepG2_ENCLB029COU\ttest\t2\n",
    ]
    wheel = tmp_path / "dl" / "dnadiffusion-0.0.0.dev0-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(recipes.DHSRecipe.member, header + "".join(rows))
    monkeypatch.setattr(recipes, "pip_download", lambda requirement, dest: wheel)
    with pytest.raises(ValueError, match="does not match the pinned"):
        recipes.prepare("dhs", tmp_path / "cache")
    assert not (tmp_path / "cache" / "dhs" / "dhs.parquet").exists()  # nothing half-written

    tsv = tmp_path / "cache" / "dhs" / recipes.Path(recipes.DHSRecipe.member).name
    monkeypatch.setattr(recipes.DHSRecipe, "member_sha256", recipes.sha256(tsv))
    frame = pd.read_parquet(recipes.prepare("dhs", tmp_path / "cache"))
    assert frame["split"].tolist() == ["valid", "train", "test"]
    assert frame["label"].tolist() == ["K562", "hESCT0", "HepG2"]
    assert frame["sequence"].tolist() == ["ACGT", "GGCC", "TTAA"]


def test_datamodule_tokenises_each_split(dna_table):
    from d3lm.data.datamodule import SequenceDataModule

    table = load_table(str(dna_table), dna_table.parent)
    tok = NT6merTokenizer()
    dm = SequenceDataModule(table, tok, batch_size=8)
    dm.setup("fit")
    (batch,) = next(iter(dm.train_dataloader()))
    assert batch.shape == (8, 1 + 60 // 6)
    assert (batch[:, 0] == tok.cls_id).all()
    assert len(dm.val_dataloader().dataset) == 48
