"""The good twins of the storage and folder cases of tests/test_bad_inputs_files.py: new SQLite and
journal files are created with their folders, a journal that another worker is appending to is
accepted, and a folder without write permission is refused with nothing written in it."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest

from d3lm.errors import D3lmError
from d3lm.io import check_folder
from d3lm.sweeps.storage import existing_storage, open_storage

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
