"""Bad files around the main inputs, through the CLI: sweep storages (URLs, SQLite and journal
files), grid and search-space files, and output or cache folders that cannot be written. Each
case must end with exit code 2 and one line that names the file, entry or URL and the reason; no
traceback; no password; the inputs untouched and nothing half-written (every file and folder
under the test's folder is the same before and after). The files and commands are in
``badfiles.py``; the good twins of the storage and folder cases in ``test_storage_files.py``."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from badfiles import (
    FILES,
    JOURNAL_NOT,
    NOT_FOLDER,
    PASSWORD,
    UNDER_FILE,
    World,
    dry,
    grid,
    report,
    sweep,
)
from badinput import clear_error, snapshot
from test_hf_import import write_nt_dir

from d3lm.cli import main


def _yaml(path: Path, content: object) -> None:
    path.write_text(yaml.safe_dump(content, sort_keys=False))


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
