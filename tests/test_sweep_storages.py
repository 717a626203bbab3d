"""Optuna sweeps on shared storages: two real worker processes finish one study on a journal file
(as array tasks of sweeps/slurm/array.sh, then its report) and on a throwaway PostgreSQL server,
losing and duplicating no trial; plain storage URLs get the installed driver; a missing driver, a
refused port, a missing database or role are one line with the password masked; and a worker killed
mid-trial leaves a FAIL trial that the next worker retries."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from sweep_helpers import (
    MICRO_SPACE,
    SLURM,
    STEPS,
    check_trials,
    micro_overrides,
    worker_env,
    write_space,
)

from d3lm.cli import main
from d3lm.errors import D3lmError
from d3lm.rundir import RunDir
from d3lm.sweeps import urls
from d3lm.sweeps.report import report
from d3lm.sweeps.storage import open_storage


def start_worker(
    space: Path, study: str, storage: str, n: int, overrides: list[str], log: Path, worker: int
) -> subprocess.Popen:
    """``d3lm sweep`` in its own process, with a 1 s heartbeat and a 3 s grace period."""
    cmd = [sys.executable, "-m", "d3lm.cli", "sweep", str(space), "--study", study]
    cmd += ["--storage", storage, "--n-trials", str(n), "--worker", str(worker)]
    cmd += ["--heartbeat", "1", "--grace", "3", *overrides]
    with open(log, "w") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=worker_env())


def wait_all(procs: list[subprocess.Popen], logs: list[Path], timeout: float = 300) -> None:
    for proc, log in zip(procs, logs, strict=True):
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        assert rc == 0, log.read_text()[-3000:]


# -------------------------------------------------------------------------------------- storages


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a unix socket in a temporary folder; yields the URL of a
    fresh database, dropped afterwards. Skips (with the reason) where no server can be started."""
    psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2 is not installed")
    initdb = shutil.which("initdb") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)), None
    )
    if initdb is None:
        pytest.skip("no PostgreSQL server binaries (initdb) on PATH or in /usr/lib/postgresql")
    bindir = Path(initdb).parent
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="d3lm-pg-"))
    if os.geteuid() == 0:  # postgres refuses to run as root
        user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
        if user is None or shutil.which("runuser") is None:
            pytest.skip("running as root without a postgres/nobody user and runuser")
        as_user = ["runuser", "-u", user, "--"]
        shutil.chown(folder, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
    data = folder / "data"
    pg_ctl = [*as_user, str(bindir / "pg_ctl"), "-D", str(data)]
    try:
        init = [*as_user, initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"]
        subprocess.run(init, check=True, capture_output=True)
        options = f"-k {folder} -c listen_addresses='' -p 5432 -c fsync=off"
        started = subprocess.run(
            [*pg_ctl, "-o", options, "-l", str(folder / "log"), "-w", "-t", "60", "start"],
            capture_output=True,
            text=True,
        )
        if started.returncode != 0:
            log = (folder / "log").read_text() if (folder / "log").exists() else ""
            pytest.skip(f"PostgreSQL did not start: {started.stderr.strip()} {log[-500:]}")
        db = f"sweep_{uuid.uuid4().hex[:8]}"
        admin = psycopg2.connect(dbname="postgres", user="postgres", host=str(folder), port=5432)
        admin.autocommit = True
        admin.cursor().execute(f"CREATE DATABASE {db}")
        try:
            # the README's plain form: d3lm gives it the installed driver (d3lm.sweeps.urls)
            yield f"postgresql://postgres@/{db}?host={folder}&port=5432"
        finally:
            admin.cursor().execute(f"DROP DATABASE {db} WITH (FORCE)")
            admin.close()
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@contextlib.contextmanager
def storage_url(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "postgresql":
        with postgres_server() as url:
            yield url
    else:
        yield f"journal://{tmp_path / 'shared' / 'study.log'}"


def start_task(
    space: Path, study: str, storage: str, n: int, overrides: list[str], log: Path, task: int
) -> subprocess.Popen:
    """Array task ``task`` of sweeps/slurm/array.sh, as SLURM would start it."""
    env = {
        **worker_env(),
        "SLURM_ARRAY_TASK_ID": str(task),
        "STORAGE": storage,
        "N_TRIALS": str(n),
        "HEARTBEAT": "1",
        "D3LM": str(Path(sys.executable).parent / "d3lm"),
    }
    cmd = ["bash", str(SLURM / "array.sh"), str(space), study, *overrides]
    with open(log, "w") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["journal", "postgresql"])
def test_two_workers_share_a_study_without_losing_a_trial(
    kind: str, tmp_path: Path, dna_table: Path
) -> None:
    """Two worker processes finish N trials together. The journal pair runs as tasks 0 and 1 of
    sweeps/slurm/array.sh, so the script's worker command runs for real; then its report."""
    n, study_name = 4, f"two-{kind}"
    space = write_space(tmp_path, MICRO_SPACE)
    overrides = micro_overrides(tmp_path, dna_table)
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    start = start_task if kind == "journal" else start_worker
    with storage_url(kind, tmp_path) as url:
        procs = [start(space, study_name, url, n, overrides, log, i) for i, log in enumerate(logs)]
        wait_all(procs, logs)
        study = optuna.load_study(study_name=study_name, storage=open_storage(url))
        trials = check_trials(study, n, tmp_path / "runs" / study_name, workers=2)
        assert all(t.state == TrialState.COMPLETE for t in trials)
        assert len({t.user_attrs["worker"] for t in trials}) == 2  # both did trials
        assert study.user_attrs["metric"] == "val/bpn"
        assert f"study {study_name}: " in logs[0].read_text() + logs[1].read_text()
        if kind == "journal":
            text = report(study_name, url, tmp_path / "report")
            assert f"best: trial {study.best_trial.number} " in text
            for name in ("trials.csv", "report.md", "history.png", "importance.png"):
                assert (tmp_path / "report" / name).stat().st_size > 0
            rows = (tmp_path / "report" / "trials.csv").read_text().splitlines()
            assert len(rows) == 1 + len(trials)


@pytest.mark.parametrize(
    ("url", "installed", "opened"),
    [
        ("postgresql://u:pw@h/db", {"psycopg2"}, "postgresql+psycopg2://u:pw@h/db"),
        ("postgresql://u@h/db", {"psycopg"}, "postgresql+psycopg://u@h/db"),
        ("postgres://u@h:5433/db", {"psycopg2", "psycopg"}, "postgresql+psycopg2://u@h:5433/db"),
        ("postgresql+psycopg://u@h/db", {"psycopg2", "psycopg"}, "postgresql+psycopg://u@h/db"),
        ("sqlite:///runs/s.db", {"sqlite3"}, "sqlite+pysqlite:///runs/s.db"),
    ],
)
def test_plain_storage_urls_get_the_installed_driver(
    url: str, installed: set[str], opened: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLAlchemy's default driver for a plain postgresql:// changed across its versions: the
    URL is given the driver this environment has, so the README's form works with either."""
    monkeypatch.setattr(urls, "_importable", lambda module: module in installed)
    target = urls.parse_storage(url)
    assert target.url == opened and target.shown == urls.mask(url)
    assert "pw" not in target.shown


@pytest.mark.parametrize(
    ("url", "installed", "message"),
    [
        (
            "postgresql://u:pw@h/db",
            set(),
            'no postgresql driver is installed (psycopg2 or psycopg); pip install -e ".[postgres]"',
        ),
        (
            "postgresql+psycopg://u:pw@h/db",
            {"psycopg2"},
            "driver 'psycopg' is not installed; install it, or write postgresql:// to use "
            "psycopg2, which is",
        ),
    ],
)
def test_missing_driver_is_named_with_its_remedy(
    url: str, installed: set[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(urls, "_importable", lambda module: module in installed)
    with pytest.raises(D3lmError) as err:
        urls.parse_storage(url)
    assert str(err.value) == f"storage {url.replace(':pw@', ':***@')}: {message}"


def sweep_error(tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]) -> str:
    """The one line ``d3lm sweep`` prints for a storage it cannot use (exit 2, no trial)."""
    argv = ["sweep", str(write_space(tmp_path, MICRO_SPACE)), "--study", "s", "--storage", url]
    assert main([*argv, "--n-trials", "1", f"runs_dir={tmp_path / 'runs'}"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()
    return err


@pytest.mark.slow
def test_refused_postgresql_port_is_one_line_with_the_password_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's plain URL to a port where nothing listens: after the start-up retries, one
    line that names the URL (password masked) and the driver's reason; no traceback."""
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed")
    with socket.socket() as closed:  # bound but not listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        err = sweep_error(tmp_path, f"postgresql://sweep:s3cret@127.0.0.1:{port}/sweeps", capsys)
    assert f"storage postgresql://sweep:***@127.0.0.1:{port}/sweeps: cannot connect:" in err
    assert "refused" in err and "s3cret" not in err


@pytest.mark.slow
def test_missing_postgresql_database_and_role_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with postgres_server() as url:
        server = url.split("?", 1)[1]
        err = sweep_error(tmp_path, f"postgresql://postgres@/no_such_db?{server}", capsys)
        assert "cannot connect:" in err and 'database "no_such_db" does not exist' in err
        err = sweep_error(tmp_path, f"postgresql://nobody_here:pw@/postgres?{server}", capsys)
        assert "postgresql://nobody_here:***@/postgres" in err
        assert 'role "nobody_here" does not exist' in err


def wait_for_running_trial(url: str, study_name: str, timeout: float = 180) -> FrozenTrial:
    """The first RUNNING trial whose run folder exists (polling the shared storage)."""
    deadline = time.monotonic() + timeout
    storage = open_storage(url)
    while time.monotonic() < deadline:
        with contextlib.suppress(KeyError):  # the worker has not created the study yet
            study = optuna.load_study(study_name=study_name, storage=storage)
            for t in study.get_trials(states=(TrialState.RUNNING,)):
                run_dir = t.user_attrs.get("run_dir")
                if run_dir and (Path(run_dir) / "config.yaml").exists():
                    return t
        time.sleep(0.1)
    raise TimeoutError(f"no trial of {study_name} started running in {timeout} s")


@pytest.mark.slow
def test_killed_worker_trial_fails_and_is_retried(tmp_path: Path, dna_table: Path) -> None:
    """SIGKILL mid-trial: after the grace period the next worker marks the trial FAIL, the retry
    callback enqueues its parameters again and the study still reaches N complete trials."""
    n, study_name = 2, "killed"
    space = write_space(tmp_path, MICRO_SPACE)
    overrides = micro_overrides(tmp_path, dna_table)
    with storage_url("journal", tmp_path) as url:
        victim = start_worker(space, study_name, url, n, overrides, tmp_path / "victim.log", 0)
        try:
            killed = wait_for_running_trial(url, study_name)
        finally:
            victim.send_signal(signal.SIGKILL)
            victim.wait()
        survivor_log = tmp_path / "survivor.log"
        wait_all(
            [start_worker(space, study_name, url, n, overrides, survivor_log, 1)], [survivor_log]
        )
        study = optuna.load_study(study_name=study_name, storage=open_storage(url))
        trials = study.get_trials()
        assert trials[killed.number].state == TrialState.FAIL
        retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
        assert len(retries) == 1
        retry = retries[0]
        assert retry.state == TrialState.COMPLETE and retry.params == killed.params
        assert retry.user_attrs["run_dir"].endswith(f"trial-{retry.number}")
        assert [t.state for t in trials].count(TrialState.COMPLETE) == n
        assert (
            RunDir(Path(killed.user_attrs["run_dir"])).trained_steps() != STEPS
        )  # killed mid-trial
