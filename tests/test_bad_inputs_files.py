"""Bad files around the main inputs, through the CLI: sweep storages (URLs, SQLite and journal
files), grid and search-space files, and output or cache folders that cannot be written. Each
case must end with exit code 2 and one line that names the file, entry or URL and the reason; no
traceback; no password; the inputs untouched and nothing half-written (every file and folder
under the test's folder is the same before and after)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import yaml
from badinput import clear_error, snapshot
from test_hf_import import write_nt_dir

from d3lm.cli import main
from d3lm.errors import D3lmError
from d3lm.io import check_folder
from d3lm.sweeps.storage import existing_storage, open_storage

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


def _yaml(path: Path, content: object) -> None:
    path.write_text(yaml.safe_dump(content, sort_keys=False))


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


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, dna_table: Path, one_thread) -> World:
    root = tmp_path_factory.mktemp("bad_files")
    (root / "folder").mkdir()
    (root / "a_file").write_text("not a folder\n")
    for name, content in FILES.items():
        if isinstance(content, str):
            (root / name).write_text(content)
        else:
            _yaml(root / name, content)
    (root / "notes.db").write_text("a text file, not a database\n")
    with sqlite3.connect(root / "other.db") as db:
        db.execute("CREATE TABLE patients (name TEXT)")
    with sqlite3.connect(root / "empty.db") as db:  # a database with no tables
        db.execute("CREATE TABLE t (x)")
        db.execute("DROP TABLE t")
    db.close()
    (root / "notes.log").write_text("a text file, not a journal\n")
    (root / "binary.log").write_bytes(bytes(range(256)) * 4)
    (root / "half.log").write_text('{"op_code": 0, "worker_id": "w"}\nnot a record\n')
    (root / "settings.json").write_text('{"op": 1}')  # JSON, no newline: not a record in progress
    run = root / "runs" / "nt"
    assert main(["import-nt", str(write_nt_dir(root / "nt")), "--out", str(run)]) == 0
    return World(root, dna_table, run)


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

#: (case id, argv builder, substrings the message must hold)
CASES: list[tuple[str, Callable[[World], list], list[str]]] = [
    # ---- storage URLs
    (
        "url-unknown-scheme",
        sweep("space.yaml", f"mysql://sweep:{PASSWORD}@db/sweeps"),
        ["mysql://sweep:***@db/sweeps", "unsupported scheme 'mysql://'", "sqlite", "journal"],
    ),
    ("url-no-scheme", sweep("space.yaml", "{root}/x.db"), ["x.db", "not a storage URL", "sqlite"]),
    (
        "url-unknown-driver",
        sweep("space.yaml", "postgresql+pg8000://sweep@db/sweeps"),
        ["postgresql+pg8000://", "unknown postgresql driver 'pg8000'", "psycopg2"],
    ),
    ("url-sqlite-memory", sweep("space.yaml", "sqlite://"), ["sqlite://", "in-memory"]),
    ("url-journal-no-file", sweep("space.yaml", "journal://"), ["journal://", "journal:///FILE"]),
    # ---- storage files
    (
        "sqlite-text-file",
        sweep("space.yaml", "sqlite:///{root}/notes.db"),
        ["notes.db", "not an SQLite database"],
    ),
    (
        "sqlite-foreign-db",
        sweep("space.yaml", "sqlite:///{root}/other.db"),
        ["other.db", "not an Optuna storage", "patients"],
    ),
    ("sqlite-folder", sweep("space.yaml", "sqlite:///{root}/folder"), ["folder", "is a directory"]),
    (
        "sqlite-under-file",
        sweep("space.yaml", "sqlite:///{root}/a_file/s.db"),
        ["a_file/s.db", *UNDER_FILE],
    ),
    ("journal-text", sweep("space.yaml", "journal://{root}/notes.log"), ["notes.log", JOURNAL_NOT]),
    (
        "journal-binary",
        sweep("space.yaml", "journal://{root}/binary.log"),
        ["binary.log", JOURNAL_NOT, "line 1"],
    ),
    (
        "journal-bad-line",
        sweep("space.yaml", "journal://{root}/half.log"),
        ["half.log", JOURNAL_NOT, "line 2"],
    ),
    (
        "journal-other-json",
        sweep("space.yaml", "journal://{root}/settings.json"),
        ["settings.json", JOURNAL_NOT, "line 1"],
    ),
    ("journal-folder", sweep("space.yaml", "journal://{root}/folder"), ["folder", "directory"]),
    (
        "journal-under-file",
        sweep("space.yaml", "journal://{root}/a_file/s.log"),
        ["a_file/s.log", *UNDER_FILE],
    ),
    ("report-missing", report("sqlite:///{root}/nope.db"), ["nope.db", "no such storage file"]),
    (
        "report-text-db",
        report("sqlite:///{root}/notes.db"),
        ["notes.db", "not an SQLite database"],
    ),
    ("report-empty-db", report("sqlite:///{root}/empty.db"), ["empty.db", "no Optuna storage"]),
    ("report-text-journal", report("journal://{root}/notes.log"), ["notes.log", JOURNAL_NOT]),
    # ---- space files
    (
        "space-syntax",
        sweep("space_syntax.yaml"),
        ["space file", "space_syntax.yaml", "not valid YAML", "line 3"],
    ),
    ("space-list", sweep("space_list.yaml"), ["space file", "space_list.yaml", "a list"]),
    ("space-params-list", sweep("space_params_list.yaml"), ["params", "a mapping", "a list"]),
    ("space-config-list", sweep("space_config_list.yaml"), ["space_config_list.yaml", "config"]),
    (
        "space-config-key",
        sweep("space_config_key.yaml"),
        ["space file", "config", "max_stepz", "base.yaml"],
    ),
    (
        "space-config-value",
        sweep("space_config_value.yaml"),
        ["space file", "config", "trainer.max_steps=0", ">= 1"],
    ),
    ("space-low-text", sweep("space_low_text.yaml"), ["params.optim.lr", "low must be a number"]),
    (
        "space-step-zero",
        sweep("space_step_zero.yaml"),
        ["params.optim.warmup_steps", "step must be a positive"],
    ),
    (
        "space-batch-zero",
        sweep("space_batch_zero.yaml"),
        ["params.data.batch_size", "data.batch_size=0", ">= 1"],
    ),
    (
        "space-lr-negative",
        sweep("space_lr_negative.yaml"),
        ["params.optim.lr", "optim.lr=-0.01", "> 0"],
    ),
    (
        "space-ratio-above-one",
        sweep("space_ratio_above_one.yaml"),
        ["params.optim.min_lr_ratio", "1.5", "in [0, 1]"],
    ),
    (
        "space-float-on-int",
        sweep("space_float_on_int.yaml"),
        ["params.data.batch_size", "expected an integer"],
    ),
    ("space-sample-n-zero", sweep("space_sample_n_zero.yaml"), ["params.sample.n", "sample.n=0"]),
    (
        "space-sampler-param",
        sweep("space_sampler_param.yaml"),
        ["params.sample.sampler.params.stepz", "stepz"],
    ),
    ("space-sampler-list", sweep("space_sampler_list.yaml"), ["space file", "sampler", "a list"]),
    ("space-metric-list", sweep("space_metric_list.yaml"), ["objective.metric", "a list"]),
    # ---- grid files
    ("grid-syntax", dry("grid_syntax.yaml"), ["grid file", "grid_syntax.yaml", "not valid YAML"]),
    ("grid-list", dry("grid_list.yaml"), ["grid file", "grid_list.yaml", "a list"]),
    ("grid-train-list", dry("grid_train_list.yaml"), ["grid file", "train", "a list"]),
    (
        "grid-values-mapping",
        dry("grid_values_mapping.yaml"),
        ["grid file", "sample axis 'steps'", "non-empty list of values"],
    ),
    ("grid-axis-field", dry("grid_axis_field.yaml"), ["sample axis 'steps'", "unknown fields"]),
    ("grid-seeds-zero", dry("grid_seeds_zero.yaml"), ["grid file", "seeds", ">= 1"]),
    ("grid-seeds-text", dry("grid_seeds_text.yaml"), ["grid file", "seeds", "'a'"]),
    (
        "grid-config-key",
        dry("grid_config_key.yaml"),
        ["grid file", "grid_config_key.yaml: config", "max_stepz"],
    ),
    (
        "grid-config-type",
        dry("grid_config_type.yaml"),
        ["grid file", "config", "trainer.max_steps", "integer"],
    ),
    ("grid-by-scale", dry("grid_by_scale.yaml"), ["grid file", "by_scale.gigantic", "scales"]),
    ("grid-by-scale-list", dry("grid_by_scale_list.yaml"), ["by_scale.micro", "a list"]),
    ("grid-experiment", dry("grid_experiment_slash.yaml"), ["grid file", "experiment", "'a/b'"]),
    (
        "grid-sampler-param",
        dry("grid_sampler_param.yaml"),
        ["grid file", "sampling point", "stepz"],
    ),
    (
        "grid-sampler-type",
        dry("grid_sampler_type.yaml"),
        ["grid file", "sampling point", "sampler 'random'"],
    ),
    (
        "grid-sample-key",
        dry("grid_sample_key.yaml"),
        ["grid file", "sample axis 'sample.nn' value '2'", "nn"],
    ),
    (
        "grid-train-range",
        grid("grid_train_range.yaml"),
        ["grid file", "train axis 'optim.lr' value '-1.0'", "optim.lr=-1.0", "> 0"],
    ),
    (
        "grid-sampler-before-training",
        grid("grid_sampler_param.yaml"),
        ["grid file", "sampling point", "stepz"],
    ),
    (
        "grid-train-sets-sampler",
        grid("grid_train_sampler.yaml"),
        ["grid file", "training point model-t", "stepz"],
    ),
    (
        "grid-cli-override",
        grid("grid_sampler_type.yaml", "trainer.max_steps=0"),
        ["trainer.max_steps=0", ">= 1"],
    ),
    # ---- output and cache folders
    ("import-out-file", lambda w: ["import-nt", w.p("nt"), "--out", w.p("a_file")], NOT_FOLDER),
    (
        "import-out-under-file",
        lambda w: ["import-nt", w.p("nt"), "--out", w.p("a_file/run")],
        UNDER_FILE,
    ),
    (
        "export-out-file",
        lambda w: ["export-nt", str(w.run), "--out", w.p("a_file")],
        NOT_FOLDER,
    ),
    (
        "export-out-under-file",
        lambda w: ["export-nt", str(w.run), "--out", w.p("a_file/nt")],
        UNDER_FILE,
    ),
    (
        "report-out-file",
        report("journal://{root}/half.log", out="a_file"),
        NOT_FOLDER,
    ),
    ("report-out-under-file", report("journal://{root}/x.log", out="a_file/r"), UNDER_FILE),
    (
        "prepare-cache-file",
        lambda w: ["data", "prepare", "copy", "--cache-dir", w.p("a_file")],
        NOT_FOLDER,
    ),
    (
        "prepare-cache-under-file",
        lambda w: ["data", "prepare", "copy", "--cache-dir", w.p("a_file/cache")],
        UNDER_FILE,
    ),
    (
        "precision-cache-file",
        lambda w: ["precision", "--cache-dir", w.p("a_file")],
        NOT_FOLDER,
    ),
    (
        "precision-cache-under-file",
        lambda w: ["precision", "--cache-dir", w.p("a_file/cache")],
        UNDER_FILE,
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("argv", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_file_is_one_clear_line(
    world: World,
    argv: Callable[[World], list[str]],
    expected: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = snapshot(world.root)
    _, err = clear_error(argv(world), capsys)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("d3lm: error: "), err
    assert all(e in lines[0] for e in expected), err
    assert PASSWORD not in err
    assert snapshot(world.root) == before  # inputs untouched, nothing half-written


def test_there_are_forty_distinct_cases() -> None:
    assert len({c[0] for c in CASES}) == len(CASES) >= 40


# ------------------------------------------------------------------- the good twins of the cases


def test_new_storage_files_and_their_folders_are_created(tmp_path: Path) -> None:
    """README's `sqlite:///runs/sweeps.db` on a fresh clone: the folder does not exist yet."""
    for url, path in (
        (f"sqlite:///{tmp_path}/a/b/sweeps.db", tmp_path / "a" / "b" / "sweeps.db"),
        (f"journal://{tmp_path}/c/lr.log", tmp_path / "c" / "lr.log"),
    ):
        optuna.create_study(study_name="s", storage=open_storage(url))
        assert path.is_file()
        assert optuna.load_study(study_name="s", storage=existing_storage(url)).trials == []


def test_journal_being_appended_by_another_worker_is_accepted(tmp_path: Path) -> None:
    url = f"journal://{tmp_path / 'j.log'}"
    optuna.create_study(study_name="s", storage=open_storage(url))
    with open(tmp_path / "j.log", "a") as handle:  # a record half-written at this moment
        handle.write('{"op_code": 1, "worker_id": "w", "study_id"')
    open_storage(url)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere: no permission to deny")
def test_folder_without_permission_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(D3lmError, match="cannot write here"):
            check_folder(locked / "out")
        with pytest.raises(D3lmError, match="cannot write here"):
            open_storage(f"sqlite:///{locked / 's.db'}")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)
