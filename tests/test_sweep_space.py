"""Optuna search-space files: coupled choices composed into trial configs, seeded start points per
worker, the shipped spaces, the metric, sampler and pruner names a space file is checked against
(read from evaluate, the motif scanners and Optuna), bad space files refused before any trial, and
a study that refuses a worker with another space or other overrides."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import FixedTrial
from sweep_helpers import MICRO_SPACE, ROOT, write_space

from d3lm.cli import main
from d3lm.evaluate import Evaluator, build_extractors
from d3lm.metrics.motifs import compare_rates
from d3lm.rundir import RunDir
from d3lm.sweeps import load_space
from d3lm.sweeps.algorithms import PRUNERS, SAMPLERS
from d3lm.sweeps.space import EVAL_METRICS, LOG_METRICS, MOTIF_METRICS
from d3lm.sweeps.worker import open_study

# ---------------------------------------------------------------------------------- space files


def test_space_suggests_coupled_choices_and_composes_trial_configs(tmp_path: Path) -> None:
    space = load_space(
        write_space(
            tmp_path,
            {
                **MICRO_SPACE,
                "config": {"trainer": {"max_steps": 7}},
                "params": {
                    "optim.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
                    "tokens": {
                        "type": "categorical",
                        "choices": [
                            {
                                "label": "k3",
                                "set": {"tokenizer.name": "kmer", "tokenizer.params.k": 3},
                            },
                            {"label": "nt", "set": {"tokenizer": {"name": "nt6mer"}}},
                        ],
                    },
                    "diffusion.schedule.name": ["linear", "*"],
                },
            },
        )
    )
    assert space.params[2].choices[0] == "linear" and "cosine" in space.params[2].choices
    values = space.suggest(
        FixedTrial({"optim.lr": 2e-3, "tokens": "k3", "diffusion.schedule.name": "cosine"})
    )
    cfg = space.trial_config(values, "mystudy", 7, ["seed=3"])
    assert (cfg.experiment, cfg.run, cfg.seed) == ("mystudy", "trial-7", 3)
    assert (cfg.tokenizer.name, cfg.tokenizer.params.k) == ("kmer", 3)
    assert cfg.optim.lr == 2e-3 and cfg.diffusion.schedule.name == "cosine"
    assert cfg.trainer.max_steps == 7 and cfg.model.preset == "micro"
    assert cfg.evaluate.split == "valid"  # a sweep never tunes on the test split
    assert RunDir.of(cfg).path == Path("runs/mystudy/trial-7")


def test_workers_draw_different_seeded_start_points(tmp_path: Path) -> None:
    space = load_space(write_space(tmp_path, MICRO_SPACE))

    def first_lr(worker: int) -> float:
        study = optuna.create_study(sampler=space.sampler(worker))
        return space.suggest(study.ask())["optim.lr"]

    assert first_lr(0) == first_lr(0) != first_lr(1)


def test_shipped_spaces_are_valid() -> None:
    paths = sorted((ROOT / "sweeps").glob("*.yaml"))
    assert {p.stem for p in paths} >= {"lr_warmup", "schedule", "tokenizer", "sampler"}
    for path in paths:
        space = load_space(path)
        assert space.params and space.metric


def test_known_evaluation_metrics_are_the_evaluators(tmp_path: Path) -> None:
    """The list the space file is checked against is what evaluate writes (no drift)."""
    seqs = ["ACGTACGTAAGGCCTT", "TTGCAACGTAGCATGC", "GGGCCCAATTACGATC", "ACACGTGTCAGTCAGT"]
    scores = Evaluator(seqs, build_extractors({}, tmp_path), train=seqs).score(seqs)
    assert set(scores) == set(EVAL_METRICS)
    assert not set(LOG_METRICS) & set(scores)


def test_known_motif_metrics_are_the_scanners() -> None:
    rates = np.array([1.0, 2.0, 3.0])
    assert set(compare_rates(rates, rates[::-1])) == set(MOTIF_METRICS)


def test_every_optuna_sampler_and_pruner_is_known_by_name() -> None:
    """Read from Optuna: its next sampler is usable in a space file with no edit here."""
    for module, base, known in (
        (optuna.samplers, optuna.samplers.BaseSampler, SAMPLERS),
        (optuna.pruners, optuna.pruners.BasePruner, PRUNERS),
    ):
        exported = {getattr(module, n) for n in module.__all__}
        kinds = {c for c in exported if isinstance(c, type) and issubclass(c, base)}
        concrete = {c for c in kinds if not inspect.isabstract(c)}
        assert set(known.values()) == concrete
    assert SAMPLERS["tpe"] is optuna.samplers.TPESampler
    assert SAMPLERS["cma_es"] is optuna.samplers.CmaEsSampler
    assert PRUNERS["successive_halving"] is optuna.pruners.SuccessiveHalvingPruner
    assert PRUNERS["none"] is optuna.pruners.NopPruner and "nop" not in PRUNERS


def _bad(space: dict, **change: object) -> dict:
    return {**space, **change}


BAD_SPACES = {
    "unknown key": (
        _bad(MICRO_SPACE, params={"optim.lrr": {"type": "float", "low": 0.1, "high": 1.0}}),
        "params.optim.lrr",
    ),
    "unknown key in coupled choice": (
        _bad(MICRO_SPACE, params={"t": [{"label": "a", "set": {"tokenizer.nam": "kmer"}}]}),
        "params.t",
    ),
    "empty categorical": (
        _bad(MICRO_SPACE, params={"tokenizer.name": []}),
        "params.tokenizer.name",
    ),
    "unregistered plugin": (
        _bad(MICRO_SPACE, params={"tokenizer.name": ["nt6mer", "kmerr"]}),
        "params.tokenizer.name",
    ),
    "low > high": (
        _bad(MICRO_SPACE, params={"optim.lr": {"type": "float", "low": 0.1, "high": 0.01}}),
        "params.optim.lr: low 0.1 > high 0.01",
    ),
    "log with low <= 0": (
        _bad(MICRO_SPACE, params={"optim.lr": {"type": "float", "low": 0, "high": 1, "log": True}}),
        "params.optim.lr: log needs low > 0",
    ),
    "unknown metric": (
        _bad(MICRO_SPACE, objective={"metric": "val/bpm", "direction": "minimize"}),
        "objective.metric: unknown metric 'val/bpm'",
    ),
    "unknown sampler": (_bad(MICRO_SPACE, sampler={"name": "cmaes"}), "sampler: unknown sampler"),
    "unknown pruner": (_bad(MICRO_SPACE, pruner="median2"), "pruner: unknown pruner"),
    "bad pruner argument": (
        _bad(MICRO_SPACE, pruner={"name": "median", "n_warmup": 3}),
        "pruner: median takes no ['n_warmup']",
    ),
    "pruner on a sampled metric": (
        _bad(MICRO_SPACE, objective={"metric": "fd_kmer"}, pruner="median"),
        "pruner: 'median' prunes on the validation bound",
    ),
    "run set by the file": (_bad(MICRO_SPACE, config={"run": "x"}), "'run' is set by the sweep"),
}


@pytest.mark.parametrize("case", list(BAD_SPACES))
def test_bad_space_fails_before_any_trial(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space, entry = BAD_SPACES[case]
    path = write_space(tmp_path, space, "bad")
    journal = tmp_path / "study.log"
    argv = ["sweep", str(path), "--study", "s", "--storage", f"journal://{journal}"]
    assert main([*argv, "--n-trials", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: " in err and entry in err, err
    assert not journal.exists()  # no study, no trial


def test_joining_a_study_with_another_space_is_refused(tmp_path: Path) -> None:
    url = f"journal://{tmp_path / 'j.log'}"
    first = load_space(write_space(tmp_path, MICRO_SPACE, "a"))
    open_study(first, "s", url, ["seed=1", "trainer.devices=1"])
    open_study(first, "s", url, ["seed=1", "trainer.devices=2"])  # a machine setting may differ
    with pytest.raises(ValueError, match="created with another overrides"):
        open_study(first, "s", url, ["seed=2"])
    other = {**MICRO_SPACE, "sampler": {"name": "random"}}
    with pytest.raises(ValueError, match="created with another space"):
        open_study(load_space(write_space(tmp_path, other, "b")), "s", url, ["seed=1"])
