"""The inputs of the table in tests/test_bad_inputs_files.py: the test folder (``World``), the
space and grid files each wrong in one way (``FILES``, written there), the ``d3lm sweep``,
``d3lm sweep report`` and ``d3lm ablation`` commands its cases run, and the message parts several
cases share. ``PASSWORD``, in the cases' storage URLs, must never be printed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "s3cret-pw"
SPACE = {
    "scale": "micro",
    "pruner": "none",
    "params": {"optim.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True}},
}
GRID = {"experiment": "g", "seeds": 1, "sample": {"sample.sampler.params.steps": [2, "per_token"]}}


@dataclass(frozen=True)
class World:
    root: Path
    table: Path  #: a good parquet of training data
    run: Path  #: a run folder imported from a HuggingFace NT v2 folder

    def p(self, name: str) -> str:
        return str(self.root / name)

    def overrides(self) -> list[str]:
        """Where a command that wrongly went on would write: under the test folder."""
        runs, results, cache = (self.root / n for n in ("runs", "results", "cache"))
        return [f"runs_dir={runs}", f"results_dir={results}", f"cache_dir={cache}"]


def _space(**change: object) -> dict:
    return {**SPACE, **change}


def _grid(**change: object) -> dict:
    return {**GRID, **change}


#: name -> file content (a mapping is written as YAML, a string as it is)
FILES: dict[str, object] = {
    "space.yaml": SPACE,
    "space_syntax.yaml": "scale: micro\nparams: {optim.lr: [0.1, 0.2\n",
    "space_list.yaml": ["scale", "params"],
    "space_params_list.yaml": _space(params=["optim.lr"]),
    "space_config_list.yaml": _space(config=["trainer.max_steps=5"]),
    "space_config_key.yaml": _space(config={"trainer.max_stepz": 5}),
    "space_config_value.yaml": _space(config={"trainer.max_steps": 0}),
    "space_low_text.yaml": _space(params={"optim.lr": {"type": "float", "low": "x", "high": 1}}),
    "space_step_zero.yaml": _space(
        params={"optim.warmup_steps": {"type": "int", "low": 0, "high": 10, "step": 0}}
    ),
    "space_batch_zero.yaml": _space(
        params={"data.batch_size": {"type": "int", "low": 0, "high": 8}}
    ),
    "space_lr_negative.yaml": _space(
        params={"optim.lr": {"type": "float", "low": -0.01, "high": 0.01}}
    ),
    "space_ratio_above_one.yaml": _space(
        params={"optim.min_lr_ratio": {"type": "float", "low": 0.5, "high": 1.5}}
    ),
    "space_float_on_int.yaml": _space(
        params={"data.batch_size": {"type": "float", "low": 2, "high": 8}}
    ),
    "space_sample_n_zero.yaml": _space(params={"sample.n": [0, 8]}),
    "space_sampler_param.yaml": _space(params={"sample.sampler.params.stepz": [2, 4]}),
    "space_sampler_list.yaml": _space(sampler=["tpe"]),
    "space_metric_list.yaml": _space(objective={"metric": ["val/bpn"]}),
    "grid_syntax.yaml": "experiment: g\ntrain: {tokenizer.name: [kmer\n",
    "grid_list.yaml": [{"train": {}}],
    "grid_train_list.yaml": _grid(train=["tokenizer.name"]),
    "grid_values_mapping.yaml": _grid(
        sample={"steps": {"key": "sample.sampler.params.steps", "values": {"a": 1}}}
    ),
    "grid_axis_field.yaml": _grid(
        sample={"steps": {"key": "sample.sampler.params.steps", "values": [2], "vals": [3]}}
    ),
    "grid_seeds_zero.yaml": _grid(seeds=0),
    "grid_seeds_text.yaml": _grid(seeds=["a"]),
    "grid_config_key.yaml": _grid(config={"trainer.max_stepz": 5}),
    "grid_config_type.yaml": _grid(config={"trainer.max_steps": "many"}),
    "grid_by_scale.yaml": _grid(by_scale={"gigantic": {"sample.n": 4}}),
    "grid_by_scale_list.yaml": _grid(by_scale={"micro": ["sample.n=4"]}),
    "grid_experiment_slash.yaml": _grid(experiment="a/b"),
    "grid_sampler_param.yaml": _grid(sample={"sample.sampler.params.stepz": [2, 4]}),
    "grid_sampler_type.yaml": _grid(sample={"sample.sampler.params.steps": [2, "many"]}),
    "grid_sample_key.yaml": _grid(sample={"sample.nn": [2, 4]}),
    "grid_train_range.yaml": _grid(train={"optim.lr": [0.001, -1.0]}),
    "grid_train_sampler.yaml": _grid(
        train={"model": {"values": [{"label": "t", "set": {"sample.sampler.params.stepz": 2}}]}}
    ),
}


def sweep(space: str, storage: str = "journal://{root}/never.log") -> Callable[[World], list]:
    return lambda w: [
        "sweep",
        w.p(space),
        "--study",
        "s",
        "--storage",
        storage.format(root=w.root),
        "--n-trials",
        "1",
        f"data.dataset={w.table}",
        *w.overrides(),
    ]


def report(storage: str, out: str = "report") -> Callable[[World], list]:
    return lambda w: [
        "sweep",
        "report",
        "--study",
        "s",
        "--storage",
        storage.format(root=w.root),
        "--out",
        w.p(out),
    ]


def grid(name: str, *extra: str) -> Callable[[World], list]:
    return lambda w: [
        "ablation",
        w.p(name),
        "--scale",
        "micro",
        *extra,
        f"data.dataset={w.table}",
        *w.overrides(),
    ]


def dry(name: str) -> Callable[[World], list]:
    return grid(name, "--dry-run")


JOURNAL_NOT = "not an Optuna journal"
UNDER_FILE = ["cannot write here", "a_file is a file"]
NOT_FOLDER = ["a_file", "a file, not a folder"]
