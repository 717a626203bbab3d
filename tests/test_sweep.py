"""Optuna sweeps: space files, shared storages with several real worker processes, a worker killed
mid-trial, pruning, DDP through torchrun, reports and the SLURM scripts' commands."""

from __future__ import annotations

import contextlib
import glob
import inspect
import json
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

import numpy as np
import optuna
import pytest
import yaml
from optuna.trial import FixedTrial, FrozenTrial, TrialState

from d3lm.cli import main
from d3lm.config import load_config, load_run_config
from d3lm.errors import D3lmError
from d3lm.evaluate import Evaluator, build_extractors
from d3lm.metrics.motifs import compare_rates
from d3lm.rundir import RunDir
from d3lm.stages.results import git_revision
from d3lm.stages.score import read_samples
from d3lm.stages.train import train
from d3lm.sweeps import load_space, run_worker, urls
from d3lm.sweeps.algorithms import PRUNERS, SAMPLERS
from d3lm.sweeps.report import report
from d3lm.sweeps.space import EVAL_METRICS, LOG_METRICS, MOTIF_METRICS
from d3lm.sweeps.storage import open_storage
from d3lm.sweeps.worker import Team, device_overrides, open_study

ROOT = Path(__file__).parents[1]
SLURM = ROOT / "sweeps" / "slurm"
STEPS = 9  # per trial: validations at 3, 6, 9
MICRO_SPACE = {
    "scale": "micro",
    "objective": {"metric": "val/bpn", "direction": "minimize"},
    "sampler": {"name": "tpe", "seed": 0, "n_startup_trials": 2},
    "pruner": "none",
    "params": {
        "optim.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
        "optim.warmup_steps": {"type": "int", "low": 0, "high": 10, "step": 5},
    },
}
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def write_space(tmp_path: Path, space: dict, name: str = "space") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def micro_overrides(root: Path, data: Path) -> list[str]:
    return [
        f"data.dataset={data}",
        f"runs_dir={root / 'runs'}",
        f"results_dir={root / 'results'}",
        f"cache_dir={root / 'cache'}",
        f"trainer.max_steps={STEPS}",
        f"trainer.val_check_interval={STEPS // 3}",
    ]


def worker_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


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


def check_trials(study: optuna.Study, n: int, runs: Path, workers: int) -> list[FrozenTrial]:
    """Every trial numbered once, in its own run folder, nothing left running; N finished
    (at most one more per extra worker: workers that start their last trials at one moment)."""
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(len(trials)))
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    finished = [t for t in trials if t.state in FINISHED]
    assert n <= len(finished) <= n + workers - 1
    dirs = [t.user_attrs["run_dir"] for t in trials]
    assert dirs == [str(runs / f"trial-{t.number}") for t in trials]
    assert sorted(p.name for p in runs.glob("trial-*")) == sorted(Path(d).name for d in dirs)
    for t in trials:
        assert t.user_attrs["git"] == git_revision()
        if t.state == TrialState.COMPLETE:
            run_dir = Path(t.user_attrs["run_dir"])
            assert RunDir(run_dir).trained_steps() == STEPS
            assert t.value == RunDir(run_dir).log()["val/bpn"].dropna().iloc[-1]
    return trials


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


@pytest.mark.slow
def test_pruned_trials_stop_training_and_are_reported(
    tmp_path: Path, dna_table: Path, one_thread: None
) -> None:
    """ThresholdPruner(upper=0.5): every bound is above it, so each trial stops at its first
    validation, keeps a checkpoint there, and counts towards N as PRUNED."""
    space_file = write_space(
        tmp_path, {**MICRO_SPACE, "pruner": {"name": "threshold", "upper": 0.5}}
    )
    url = f"sqlite:///{tmp_path / 'pruned.db'}"
    overrides = micro_overrides(tmp_path, dna_table)
    lines: list[str] = []
    run_worker(
        load_space(space_file, overrides),
        "pruned",
        url,
        2,
        overrides,
        heartbeat=1,
        echo=lines.append,
    )
    assert lines == ["study pruned: 2 pruned (target 2 finished)"]
    study = optuna.load_study(study_name="pruned", storage=url)
    for t in study.get_trials():
        assert t.state == TrialState.PRUNED
        assert list(t.intermediate_values) == [STEPS // 3]
        assert RunDir(Path(t.user_attrs["run_dir"])).trained_steps() == STEPS // 3
    text = report("pruned", url, tmp_path / "report")
    assert "best: none of 2 trials completed" in text
    assert "| 0 | PRUNED |" in text
    assert "importance.png: not drawn, 0 complete trial(s)" in text
    assert not (tmp_path / "report" / "importance.png").exists()


@pytest.mark.slow
def test_sampler_sweep_from_a_trained_run(
    tmp_path: Path, dna_table: Path, one_thread: None
) -> None:
    """--from-run: trials link one trained model, sample it (a ``per_token`` step count resolves
    from its tokenizer) and score a metric of metrics.json on the validation split."""
    overrides = micro_overrides(tmp_path, dna_table)
    base = train(load_config("micro", overrides=[*overrides, "experiment=base", "run=r0"]))
    space = {
        **MICRO_SPACE,
        "objective": {"metric": "fd_kmer", "direction": "minimize"},
        "config": {"evaluate": {"features": ["kmer"], "motifs": False}, "sample.n": 8},
        "params": {
            "sample.sampler.params.steps": [3, "per_token"],
            "sample.sampler.params.temperature": {"type": "float", "low": 0.8, "high": 1.2},
        },
    }
    path = write_space(tmp_path, space)
    url = f"journal://{tmp_path / 'j.log'}"
    run_worker(load_space(path, overrides, base), "fd", url, 2, overrides, heartbeat=1)
    trials = optuna.load_study(study_name="fd", storage=open_storage(url)).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for trial in trials:
        run_dir = Path(trial.user_attrs["run_dir"])
        assert (run_dir / "checkpoints" / "last.ckpt").samefile(base / "checkpoints" / "last.ckpt")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert trial.value == metrics["generated"]["fd_kmer"]
        assert {"real", "uniform", "shuffle", "markov"} <= set(metrics)
        assert len(read_samples(run_dir / "samples.fasta")) == 8
        saved = load_run_config(run_dir)
        assert (
            saved.sample.sampler.params.temperature
            == trial.params["sample.sampler.params.temperature"]
        )
        assert saved.evaluate.split == "valid"
    # a training key cannot be searched on a trained run
    trains = {**space, "params": {**space["params"], **MICRO_SPACE["params"]}}
    with pytest.raises(D3lmError, match=r"params\.optim\.lr: optim\.lr would need training"):
        load_space(write_space(tmp_path, trains, "trains"), overrides, base)


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


def test_one_process_worker_trains_on_one_device(tmp_path: Path) -> None:
    """Lightning's own launcher would re-run the sweep in every process it starts."""
    space = load_space(write_space(tmp_path, MICRO_SPACE))
    assert device_overrides(space, [], Team()) == ["trainer.devices=1"]  # "auto"
    assert device_overrides(space, ["trainer.devices=1"], Team()) == []
    with pytest.raises(D3lmError, match=r"trainer\.devices=2 but this worker runs 1 process"):
        device_overrides(space, ["trainer.devices=2"], Team())


@pytest.mark.slow
def test_ddp_trial_through_torchrun(tmp_path: Path, dna_table: Path) -> None:
    """The DDP variant on two CPU ranks (gloo): rank 0 asks the trials, rank 1 trains them too."""
    space = write_space(tmp_path, MICRO_SPACE)
    url = f"journal://{tmp_path / 'j.log'}"
    ddp = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]
    ddp += ["data.eval_batch_size=16"]  # a validation batch for each of the 2 ranks
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "d3lm.cli", "sweep", str(space), "--study", "ddp", "--storage", url]
    cmd += ["--n-trials", "1", "--heartbeat", "1", *micro_overrides(tmp_path, dna_table), *ddp]
    done = subprocess.run(cmd, env=worker_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    study = optuna.load_study(study_name="ddp", storage=open_storage(url))
    check_trials(study, 1, tmp_path / "runs" / "ddp", workers=1)
    assert len(study.trials) == 1  # rank 1 never asked for a trial


# ----------------------------------------------------------------------------------- SLURM scripts


def dry_run(script: str, *args: str, **env: str) -> list[str]:
    done = subprocess.run(
        ["bash", str(SLURM / script), *args],
        env={**os.environ, "DRY_RUN": "1", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()


def test_slurm_array_dry_run_prints_one_worker_per_task() -> None:
    out = dry_run(
        "array.sh",
        "sweeps/lr_warmup.yaml",
        "lr",
        "data.dataset=dhs",
        STORAGE="journal:///shared/sweeps/lr.log",
        WORKERS="3",
        N_TRIALS="40",
        SBATCH_ARGS="--partition=gpu --time=4:00:00",
    )
    worker = "d3lm sweep sweeps/lr_warmup.yaml --study lr --storage journal:///shared/sweeps/lr.log"
    assert out == [
        "sbatch --array=0-2 --gres=gpu:1 --partition=gpu --time=4:00:00 sweeps/slurm/array.sh "
        "sweeps/lr_warmup.yaml lr data.dataset=dhs",
        *(
            f"task {i}: {worker} --n-trials 40 --worker {i} --heartbeat 60 data.dataset=dhs"
            for i in range(3)
        ),
    ]


def test_slurm_ddp_dry_run_prints_torchrun_per_task() -> None:
    url = "postgresql://sweep@db/sweeps?sslmode=require"
    out = dry_run("ddp.sh", "sweeps/tokenizer.yaml", "tok", STORAGE=url, WORKERS="2", N_TRIALS="9")
    assert (
        out[0] == "sbatch --array=0-1 --gres=gpu:4 sweeps/slurm/array.sh sweeps/tokenizer.yaml tok"
    )
    torchrun = "python -m torch.distributed.run --standalone --nproc-per-node 4 -m d3lm.cli"
    quoted = url.replace("?", "\\?")
    assert out[1:] == [
        f"task {i}: {torchrun} sweep sweeps/tokenizer.yaml --study tok --storage {quoted} "
        f"--n-trials 9 --worker {i} --heartbeat 60 trainer.devices=4 trainer.strategy=ddp"
        for i in range(2)
    ]
    # inside array task 1: only that task's command
    inside = dry_run(
        "ddp.sh", "sweeps/tokenizer.yaml", "tok", STORAGE=url, N_TRIALS="9", SLURM_ARRAY_TASK_ID="1"
    )
    assert inside == [out[2].removeprefix("task 1: ")]


def test_slurm_script_needs_storage_and_trials() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("STORAGE", "N_TRIALS")}
    done = subprocess.run(
        ["bash", str(SLURM / "array.sh"), "s.yaml", "study"],
        env={**env, "DRY_RUN": "1"},
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "STORAGE" in done.stderr
