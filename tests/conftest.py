"""Shared fixtures: tiny real-shaped data made in the tests, never downloaded."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from omegaconf import DictConfig

from d3lm import precision
from d3lm.config import load_config

#: Tests that resolved ``trainer.precision: auto`` in the last full pass, one node id a line:
#: the second pass of ``make test`` reruns them under the outcome this machine did not pick.
AUTO_TESTS = Path(__file__).resolve().parent.parent / "build" / "auto-precision-tests.txt"
_auto_users: set[str] = set()
_FORCED = pytest.StashKey[str]()  # the outcome a forced pass imposes


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--auto-precision",
        choices=["machine", "other", *precision.OUTCOMES],
        default="machine",
        help="what trainer.precision=auto resolves to: the machine's probe (default, and record "
        "which tests use it), or a forced outcome for only those tests ('other': the one this "
        "machine does not pick), so one CPU checks the suite under both",
    )


def pytest_configure(config: pytest.Config) -> None:
    mode = config.getoption("--auto-precision")
    if mode == "machine":
        return
    if mode == "other":
        mine = precision.cpu_probe(None).choice().precision
        mode = next(o for o in precision.OUTCOMES if o != mine)
    os.environ[precision.FORCE_ENV] = mode
    config.stash[_FORCED] = mode


def pytest_report_header(config: pytest.Config) -> str:
    forced = config.stash.get(_FORCED, None)
    return f"trainer.precision=auto forced to {forced}" if forced else ""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A forced pass keeps only the tests that resolved ``auto`` when last run on the machine's
    own outcome (all of them when no full pass has been recorded here yet)."""
    if _FORCED not in config.stash or not AUTO_TESTS.exists():
        return
    wanted = _recorded()
    keep = [item for item in items if item.nodeid in wanted]
    config.hook.pytest_deselected(items=[item for item in items if item.nodeid not in wanted])
    items[:] = keep


@pytest.fixture(autouse=True)
def _record_auto_precision(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Note the tests whose runs resolve ``trainer.precision: auto`` in this process."""
    real = precision.forced

    def recording() -> precision.Choice | None:
        _auto_users.add(request.node.nodeid)
        return real()

    monkeypatch.setattr(precision, "forced", recording)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _FORCED in session.config.stash or not _auto_users:
        return
    AUTO_TESTS.parent.mkdir(parents=True, exist_ok=True)
    AUTO_TESTS.write_text("\n".join(sorted(_recorded() | _auto_users)) + "\n", encoding="utf-8")


def _recorded() -> set[str]:
    """The node ids in ``AUTO_TESTS`` (ids may hold spaces: one a line)."""
    if not AUTO_TESTS.exists():
        return set()
    return set(AUTO_TESTS.read_text(encoding="utf-8").splitlines())


def markov_sequences(n: int, length: int, seed: int = 0) -> list[str]:
    """Sequences from a fixed first-order chain with CpG depletion and a planted motif.

    Real enough for a model to learn something in a few steps (the chain is far from uniform),
    small enough to train on in seconds.
    """
    rng = np.random.default_rng(seed)
    bases = np.array(list("ACGT"))
    transition = np.array(
        [
            [0.40, 0.20, 0.25, 0.15],
            [0.35, 0.30, 0.05, 0.30],  # C -> G rare: CpG depletion, as in real DNA
            [0.30, 0.25, 0.30, 0.15],
            [0.15, 0.20, 0.25, 0.40],
        ]
    )
    cumulative = transition.cumsum(axis=1)
    out = []
    for _ in range(n):
        state = rng.integers(4)
        draws = rng.random(length)
        seq = np.empty(length, dtype=np.int64)
        for i in range(length):
            state = int(np.searchsorted(cumulative[state], draws[i]))
            seq[i] = state
        text = "".join(bases[seq])
        start = rng.integers(0, length - 8)
        out.append(text[:start] + "TATAAAAG" + text[start + 8 :])
    return out


def sweep_space(tmp_path: Path) -> Path:
    """A micro search space over the learning rate, minimising val/bpn (random sampler)."""
    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "scale": "micro",
                "objective": {"metric": "val/bpn", "direction": "minimize"},
                "sampler": {"name": "random", "seed": 0},
                "pruner": "none",
                "params": {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
            }
        )
    )
    return space


def micro_config(table: Path, root: Path, *overrides: str) -> DictConfig:
    """The ``micro`` config training on ``table``, with its runs and caches under ``root``."""
    base = [f"data.dataset={table}", f"runs_dir={root}", f"cache_dir={root / 'cache'}"]
    return load_config("micro", overrides=[*base, *overrides])


@pytest.fixture(scope="session")
def dna_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A parquet with ``name, sequence, split, label`` of 60-bp sequences (train/valid/test)."""
    seqs = markov_sequences(480, 60, seed=1)
    splits = ["train"] * 384 + ["valid"] * 48 + ["test"] * 48
    frame = pd.DataFrame(
        {
            "name": [f"seq{i}" for i in range(len(seqs))],
            "sequence": seqs,
            "split": splits,
            "label": ["a", "b"] * (len(seqs) // 2),
        }
    )
    path = tmp_path_factory.mktemp("data") / "fixture.parquet"
    frame.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Run a module single-threaded (tiny tensors: threads only contend), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
