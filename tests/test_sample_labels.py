"""``d3lm sample --label K guidance=W``: label shares per sequence index, FASTA headers with
``label=``, the provenance of labels and guidance, and the refusals. Here the conditional run
is the micro run with a label-blind encoder (condition ids read as ``<cls>``), so the draws it
must make are known: at guidance 0, the unconditional run's own (a really conditional run end to
end: tests/test_conditional_e2e.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from badinput import clear_error
from conftest import micro_config
from torch import Tensor, nn

from d3lm.cli import main
from d3lm.conditioning import LabelConditioning
from d3lm.config import load_run_config
from d3lm.data.fasta import read_fasta_described, write_fasta
from d3lm.errors import D3lmError
from d3lm.preflight import check_run_config
from d3lm.rundir import provenance_of
from d3lm.stages import sample as sample_stage
from d3lm.stages.conditional import Condition, header, label_names, sequence_labels
from d3lm.stages.ranges import SAMPLE_RANGES
from d3lm.stages.train import train

CLASSES = ("a", "b")  # the fixture table's labels


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Tiny tensors: threads only contend (and outputs are compared bitwise)."""


# ---- the pure parts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "n", "want"),
    [
        (["K562"], 3, ["K562"] * 3),
        (["a", "b"], 5, ["a", "a", "a", "b", "b"]),
        (["a", "a", "b"], 6, ["a"] * 4 + ["b"] * 2),  # a name listed twice: two shares
        (["all"], 7, ["x"] * 3 + ["y"] * 2 + ["z"] * 2),  # class order, remainder first
        (["a", "b", "c"], 2, ["a", "b"]),
        ([], 3, [None] * 3),
    ],
)
def test_label_shares_are_a_function_of_labels_and_n(labels, n, want):
    assert sequence_labels(labels, n, ("x", "y", "z")) == want


def test_headers_carry_the_label_and_read_back(tmp_path):
    assert header("e/r/0", "K562") == "e/r/0 label=K562" and header("e/r/1", None) == "e/r/1"
    path = tmp_path / "s.fa"
    write_fasta(path, [(header("e/r/0", "K562"), "ACGT"), (header("e/r/1", None), "TTTT")])
    assert list(read_fasta_described(path)) == [
        ("e/r/0", "label=K562", "ACGT"),
        ("e/r/1", "", "TTTT"),
    ]


@pytest.mark.parametrize(
    ("value", "names"), [(None, []), ("K562", ["K562"]), (["a", "a"], ["a", "a"])]
)
def test_label_names(value, names):
    assert label_names(value) == names


@pytest.mark.parametrize("value", [[], {"a": 1}, 3])
def test_label_names_refuse_other_shapes(value):
    with pytest.raises(D3lmError, match=r"sample\.labels=.*expected null, class names or \[all\]"):
        label_names(value)


class Conditional(nn.Module):
    """What a conditional model shows the stage: a ``conditioning`` plugin."""

    def __init__(self, first_id: int = 10) -> None:
        super().__init__()
        self.conditioning = LabelConditioning(CLASSES, first_id=first_id)


@pytest.mark.parametrize(
    ("model", "labels", "guidance", "error"),
    [
        (nn.Module(), ["a"], 0.0, r"run: --label \(sample\.labels\).*conditioning: none"),
        (nn.Module(), None, 1.0, r"run: --label \(sample\.labels\) and sample\.guidance need"),
        (Conditional(), ["K562"], 0.0, r"'K562' is not a class of this model \(classes: a, b\)"),
        (Conditional(), ["all", "a"], 0.0, r"'all' stands alone"),
        (Conditional(), None, 2.0, r"sample\.guidance=2\.0: .*--label NAME or --label all"),
    ],
)  # fmt: skip
def test_what_a_condition_refuses(model, labels, guidance, error):
    with pytest.raises(D3lmError, match=error):
        Condition.of(model, labels, guidance, 4, "run")


def test_an_unconditional_model_samples_as_it_did():
    cond = Condition.of(nn.Module(), None, 0.0, 3, "run")
    layout = torch.ones(5, 10, dtype=torch.bool)
    ids, known, same = cond.prompt(range(3), layout, 1)
    assert (ids == 1).all() and not known.any() and same is layout
    den = object()
    assert cond.denoiser(den) is den and cond.passes == 1
    assert cond.provenance() == {"labels": None, "guidance": 0.0}


def test_a_conditional_prompt_holds_each_rows_condition_token():
    cond = Condition.of(Conditional(), ["all"], 1.5, 5, "run")  # a a a b b
    layout = torch.zeros(4, 10, dtype=torch.bool)
    layout[0, 2], layout[1:, 3:7] = True, True
    ids, known, wide = cond.prompt(range(2, 5), layout, 1)
    assert ids[:, 0].tolist() == [10, 11, 11] and (ids[:, 1:] == 1).all()
    assert known[:, 0].all() and not known[:, 1:].any()
    assert wide.shape == (4, 13) and wide[0, 10:].all() and not wide[0, :10].any()
    assert cond.passes == 2 and cond.provenance() == {"labels": {"a": 3, "b": 2}, "guidance": 1.5}
    assert cond.strip(ids, 2)[:, 0].tolist() == [2, 2, 2]


@pytest.mark.parametrize(
    ("value", "ok"),
    [(0.0, True), (2, True), (-0.5, False), (float("nan"), False), (float("inf"), False)],
)
def test_guidance_range(value, ok):
    rule, wanted = SAMPLE_RANGES["sample.guidance"]
    assert rule(value) is ok and wanted == "a finite number >= 0"


# ---- the stage on a run ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(dna_table: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("labels")
    cfg = micro_config(
        dna_table, root, "experiment=e", "run=r", "trainer.max_steps=2", "trainer.precision=32-true"
    )
    return train(cfg)


def settings(tmp_path: Path, *more: str) -> list[str]:
    return ["--n", "6", "--bp", "60", "--workers", "1", "sample.batch_size=4",
            "sample.progress=false", "steps=8", f"cache_dir={tmp_path}", *more]  # fmt: skip


class LabelBlind(nn.Module):
    """A trained encoder that reads every condition id as ``<cls>``: a conditional model whose
    draws are the unconditional model's."""

    def __init__(self, inner: nn.Module, first_id: int, cls_id: int) -> None:
        super().__init__()
        self.inner, self.first_id, self.cls_id = inner, first_id, cls_id

    def forward(self, ids: Tensor, at: Tensor | None = None) -> Tensor:
        return self.inner(ids.masked_fill(ids >= self.first_id, self.cls_id), at=at)


@pytest.fixture
def conditional(monkeypatch: pytest.MonkeyPatch) -> None:
    """``sample`` loads the run as a label-blind conditional model of classes a, b."""
    real = sample_stage.load_model

    def loading(run_dir: Path, checkpoint: Path | None = None):
        model = real(run_dir, checkpoint)
        tok = model.tokenizer
        model.conditioning = LabelConditioning(CLASSES, first_id=tok.vocab_size)
        model.encoder = LabelBlind(model.encoder, tok.vocab_size, tok.cls_id)
        return model

    monkeypatch.setattr(sample_stage, "load_model", loading)


def sample_cli(run: Path, out: Path, *args: str) -> list[tuple[str, str, str]]:
    assert main(["sample", str(run), "--out", str(out), *args]) == 0
    return list(read_fasta_described(out))


def sidecar(out: Path) -> dict:
    return json.loads(provenance_of(out).read_text())


def test_labels_and_guidance_reach_the_fasta_and_its_provenance(run, tmp_path, conditional):
    plain = sample_cli(run, tmp_path / "plain.fa", *settings(tmp_path))
    assert [d for _, d, _ in plain] == [""] * 6  # unlabelled: no label field
    labelled = sample_cli(run, tmp_path / "all.fa", "--label", "all", *settings(tmp_path))
    assert [n for n, _, _ in labelled] == [f"e/r/{i}" for i in range(6)]
    assert [d for _, d, _ in labelled] == ["label=a"] * 3 + ["label=b"] * 3
    # a label-blind model at guidance 0 draws what the unconditional sampler draws
    assert [s for *_, s in labelled] == [s for *_, s in plain]
    info = sidecar(tmp_path / "all.fa")
    assert info["labels"] == {"a": 3, "b": 3} and info["guidance"] == 0.0

    out = tmp_path / "guided.fa"
    guided = sample_cli(run, out, "--label", "b", "--label", "a", "--label", "b", "guidance=2",
                        *settings(tmp_path))  # fmt: skip
    assert [d for _, d, _ in guided] == ["label=b"] * 2 + ["label=a"] * 2 + ["label=b"] * 2
    assert all(len(s) == 60 for *_, s in guided)
    info = sidecar(out)
    assert info["labels"] == {"b": 4, "a": 2} and info["guidance"] == 2.0
    assert info["nfe_mean"] == 2 * sidecar(tmp_path / "all.fa")["nfe_mean"]  # two passes a call


def test_an_unconditional_run_refuses_labels_and_guidance(run, tmp_path, capsys):
    before = sorted(p.name for p in run.iterdir())
    for extra in (["--label", "a"], ["guidance=1"]):
        message, _ = clear_error(["sample", str(run), *settings(tmp_path), *extra], capsys)
        assert "need a conditional model" in message and "conditioning: none" in message
    message, _ = clear_error(["sample", str(run), *settings(tmp_path), "guidance=-1"], capsys)
    assert "sample.guidance=-1" in message and "a finite number >= 0" in message
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written


def test_an_unknown_label_names_the_classes(run, tmp_path, capsys, conditional):
    message, _ = clear_error(["sample", str(run), *settings(tmp_path), "--label", "K562"], capsys)
    assert "label 'K562' is not a class of this model (classes: a, b)" in message


def test_a_grid_refuses_a_negative_guidance_before_training(run):
    with pytest.raises(D3lmError, match=r"sample\.guidance=-1\.0: must be a finite number >= 0"):
        check_run_config(load_run_config(run, ["sample.guidance=-1.0"]))
