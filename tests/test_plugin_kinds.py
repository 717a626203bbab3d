"""A plugin of each kind, added in one file and nothing else, reaches every list of its kind.

Four throwaway plugins (a tokenizer, a schedule, an unmasking order and a task), each a module of
its own in a package that declares them as ``d3lm.plugins`` entry points, the way ``pip install``
leaves a third-party package. No test, grid or list names them, yet each must show up in
``d3lm plugins``, in a ``"*"`` grid (ablation axes, search-space choices, the understanding
grid's tasks) and in its kind's parametrised contract tests, and pass them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from registered import examples

from d3lm.experiments import ablation, understanding
from d3lm.plugins import ENTRY_POINTS, load_plugins
from d3lm.registry import REGISTRIES
from d3lm.sweeps.space import load_space

ROOT = Path(__file__).resolve().parents[1]

#: kind -> (plugin name, the one module file that adds it).
PLUGINS = {
    "tokenizer": (
        "throwaway_dimer",
        '''
from d3lm.registry import TOKENIZERS
from d3lm.tokenizers import KmerTokenizer


@TOKENIZERS.register("throwaway_dimer")
class Dimer(KmerTokenizer):
    """Throwaway: non-overlapping 2-mers."""

    def __init__(self, add_cls: bool = True) -> None:
        super().__init__(2, add_cls)
''',
    ),
    "schedule": (
        "throwaway_square",
        '''
from dataclasses import dataclass

from d3lm.diffusion import NoiseSchedule
from d3lm.registry import SCHEDULES


@SCHEDULES.register("throwaway_square")
@dataclass(frozen=True)
class Square(NoiseSchedule):
    """Throwaway: alpha = 1 - (t + t^2) / 2."""

    def alpha(self, t):
        return 1.0 - (t + t**2) / 2

    def alpha_prime(self, t):
        return -(1.0 + 2.0 * t) / 2
''',
    ),
    "unmask_order": (
        "throwaway_right_to_left",
        '''
import torch

from d3lm.registry import UNMASK_ORDERS
from d3lm.sampling import UnmaskOrder


@UNMASK_ORDERS.register("throwaway_right_to_left")
class RightToLeft(UnmaskOrder):
    """Throwaway: rightmost masked position first."""

    def scores(self, ctx):
        pos = torch.arange(ctx.ids.shape[1], dtype=torch.float64, device=ctx.ids.device)
        return pos.expand_as(ctx.confidence)
''',
    ),
    "task": (
        "throwaway_gc",
        '''
import pandas as pd

from d3lm.registry import TASKS
from d3lm.tasks.base import Task, TaskInfo


@TASKS.register("throwaway_gc")
class GCRich(Task):
    """Throwaway: is a 20-bp sequence GC-rich?"""

    name = "throwaway_gc"
    info = TaskInfo(name, ("at", "gc"), 20)

    def build(self, cache_dir):
        rows = [("GC" * 10, "gc"), ("AT" * 10, "at")] * 10
        splits = ["train"] * 12 + ["valid"] * 4 + ["test"] * 4
        frame = pd.DataFrame(rows, columns=["sequence", "label"]).assign(split=splits)
        return frame.assign(name=[f"r{i}" for i in range(len(frame))]), {"task": self.name}
''',
    ),
}


def install(site: Path) -> None:
    """One module a plugin, declared as entry points: what ``pip install`` leaves on the path."""
    package = site / "throwaway_plugins"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for kind, (_, source) in PLUGINS.items():
        (package / f"{kind}.py").write_text(source)
    info = site / "throwaway_plugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: throwaway-plugins\nVersion: 0.1\n")
    entries = "".join(f"{kind} = throwaway_plugins.{kind}\n" for kind in PLUGINS)
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINTS}]\n{entries}")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("site")
    install(path)
    return path


def environment(site: Path) -> dict[str, str]:
    """This process's environment with the package on the path (ahead of the checkout)."""
    path = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": "1"}


@pytest.fixture
def installed(site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The package on this process's path and loaded; afterwards no trace of it is left."""
    monkeypatch.syspath_prepend(str(site))
    load_plugins()
    yield
    for kind, (name, _) in PLUGINS.items():
        REGISTRIES[kind].unregister(name)
    for module in [m for m in sys.modules if m.split(".")[0] == "throwaway_plugins"]:
        del sys.modules[module]


def test_listed_by_d3lm_plugins(site: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "d3lm.cli", "plugins", "--json"],
        env=environment(site),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    for kind, (name, _) in PLUGINS.items():
        assert name in listed[kind], kind
        assert listed[kind][name].startswith("Throwaway")


def test_in_every_wildcard_grid(tmp_path: Path, installed: None) -> None:
    tokenizer, schedule, order = (PLUGINS[k][0] for k in ("tokenizer", "schedule", "unmask_order"))
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(
        yaml.safe_dump(
            {
                "seeds": 1,
                "train": {"tokenizer.name": "*", "diffusion.schedule.name": ["linear", "*"]},
                "sample": {"sample.sampler.params.order": "*"},
            }
        )
    )
    grid = ablation.load_grid(grid_file)
    labels = {axis.name: [s.label for s in axis.settings] for axis in grid.train + grid.sample}
    assert tokenizer in labels["tokenizer.name"]
    assert schedule in labels["diffusion.schedule.name"]
    assert order in labels["sample.sampler.params.order"]

    space_file = tmp_path / "space.yaml"
    space_file.write_text(
        yaml.safe_dump(
            {
                "scale": "micro",
                "params": {
                    "tokenizer.name": ["nt6mer", "*"],
                    "diffusion.schedule.name": "*",
                    "sample.sampler.params.order": "*",
                },
            }
        )
    )
    choices = {p.name: p.choices for p in load_space(space_file).params}
    assert tokenizer in choices["tokenizer.name"]
    assert schedule in choices["diffusion.schedule.name"]
    assert order in choices["sample.sampler.params.order"]

    tasks_file = tmp_path / "understanding.yaml"
    tasks_file.write_text(yaml.safe_dump({"finetune": {"tasks": "*"}}))
    assert PLUGINS["task"][0] in understanding.load_grid(tasks_file).tasks


def test_parametrises_its_kinds_tests(installed: None) -> None:
    """What the contract tests are parametrised with at collection time."""
    for kind, (name, _) in PLUGINS.items():
        assert name in [case.id for case in examples(kind)], kind


@pytest.mark.slow
def test_passes_its_kinds_contract_tests(site: Path) -> None:
    """A fresh pytest with the package on the path collects each plugin into its kind's
    parametrised tests, and every one of them passes."""
    modules = ["test_tokenizers", "test_sampling_lengths", "test_diffusion", "test_sampling"]
    command = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-k", "throwaway"]
    done = subprocess.run(
        [*command, *(f"tests/{m}.py" for m in [*modules, "test_tasks"])],
        cwd=ROOT,
        env=environment(site),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    passed = [line for line in done.stdout.splitlines() if " PASSED" in line]
    for kind, (name, _) in PLUGINS.items():
        assert any(name in line for line in passed), (kind, done.stdout[-3000:])
