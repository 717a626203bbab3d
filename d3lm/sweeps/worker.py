"""One sweep worker: ask a trial, train it as an ordinary run folder, report, repeat.

Any number of workers (processes, nodes, SLURM array tasks) share a study through its storage.
A worker stops when the study holds ``n_trials`` finished trials (COMPLETE or PRUNED) counted over
all workers; FAIL trials do not count, and a trial whose worker died is failed by the heartbeat
and enqueued again. A worker starts a new trial only while finished + running trials are fewer
than ``n_trials``; otherwise it waits for the running ones, so that a trial whose worker is killed
still gets its retry run (workers that finish their last trials at the same moment may still add
one or two trials past ``n_trials``).

Under ``torchrun`` (``WORLD_SIZE`` > 1) the trial is trained with DDP: rank 0 is the Optuna
worker and hands each trial's parameters to the other ranks, which train the same run with it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import optuna
import torch
import torch.distributed as dist
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from d3lm.errors import D3lmError
from d3lm.interrupt import Interrupted
from d3lm.io import write_text
from d3lm.rundir import RunDir
from d3lm.stages.results import git_revision
from d3lm.stages.sample import sample
from d3lm.stages.score import GENERATED, Scorer
from d3lm.stages.train import train
from d3lm.sweeps.space import LOG_METRICS, Space
from d3lm.sweeps.storage import open_storage
from d3lm.sweeps.urls import mask

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
#: Seconds between looks at the study while the last trials run on other workers.
POLL_S = 5
#: Overrides that describe the machine, not the experiment: workers may differ in them.
SITE_KEYS = ("trainer.accelerator", "trainer.devices", "trainer.strategy", "data.num_workers")
SITE_KEYS += ("runs_dir", "results_dir", "cache_dir", "trainer.enable_progress_bar")


class ReportValidation(L.Callback):
    """After each validation, report the bound to the trial and stop training when the pruner
    says so. Rank 0 decides (only it holds the trial) and broadcasts, so DDP ranks stop together;
    training stops cleanly rather than raising, so a pruned trial keeps its last checkpoint."""

    def __init__(self, trial: optuna.Trial | None, metric: str) -> None:
        self.trial, self.metric = trial, metric
        self.pruned_at: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        value = trainer.callback_metrics.get(self.metric)
        if self.trial is not None and value is not None:
            self.trial.report(float(value), trainer.global_step)
            prune = self.trial.should_prune()
        if trainer.strategy.broadcast(prune, src=0):
            self.pruned_at = trainer.global_step
            trainer.should_stop = True


class Team:
    """The ranks that train one trial together: just this process, or every ``torchrun`` rank
    (a gloo group carries the trial from rank 0 to the others)."""

    def __init__(self) -> None:
        self.size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local = int(os.environ.get("LOCAL_WORLD_SIZE", self.size))  # ranks on this node
        self.group: Any = None
        if self.size > 1:
            if not dist.is_initialized():
                backend = "nccl" if torch.cuda.is_available() else "gloo"
                dist.init_process_group(backend)  # Lightning's DDP reuses it
            self.group = dist.new_group(backend="gloo")

    def close(self) -> None:
        """Tear the process group down before the interpreter exits: a gloo group left to the
        exit hooks aborts a rank now and then ("terminate called without an active
        exception"), failing a finished sweep."""
        if self.size > 1 and dist.is_initialized():
            dist.destroy_process_group()

    def share(self, message: Any) -> Any:
        """Rank 0's ``message`` on every rank."""
        if self.size == 1:
            return message
        box = [message]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]


@dataclass
class Worker:
    space: Space
    study_name: str
    overrides: list[str]
    team: Team
    max_retry: int | None = 3

    def __post_init__(self) -> None:
        self.scorer = Scorer() if self.space.evaluates else None

    def config(self, values: dict[str, Any], number: int) -> DictConfig:
        return self.space.trial_config(values, self.study_name, number, self.overrides)

    def train(self, cfg: DictConfig, trial: optuna.Trial | None) -> Path:
        """Train a trial's run folder; raise TrialPruned when the pruner stopped it. With
        ``--from-run`` the folder gets the config and a link to that run's checkpoint instead."""
        if self.space.from_run is not None:
            return link_run(cfg, self.space.from_run)
        prune_on = self.space.metric if self.space.metric in LOG_METRICS else "val/bpn"
        report = ReportValidation(trial, prune_on)
        run_dir = train(cfg, callbacks=[report])
        if report.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned on {prune_on} at step {report.pruned_at}")
        return run_dir

    def objective(self, trial: optuna.Trial) -> float:
        values = self.space.suggest(trial)
        cfg = self.config(values, trial.number)
        run_dir = RunDir.of(cfg).path
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("git", git_revision())
        trial.set_user_attr("worker", worker_name())
        self.team.share({"number": trial.number, "values": values})
        try:
            self.train(cfg, trial)
            return self.score(cfg, run_dir)
        except Interrupted as err:
            err.where = f"{err.where or run_dir}; {self.fail(trial)}"
            raise

    def fail(self, trial: optuna.Trial) -> str:
        """Mark the trial this worker was stopped in FAIL and queue its parameters again, as the
        heartbeat does for a killed worker's trial (the interruption passes through Optuna, which
        would leave it RUNNING until its heartbeat went stale); say what was done."""
        study = trial.study
        study.tell(trial, state=TrialState.FAIL)
        trials = study.get_trials(deepcopy=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            RetryHeartbeatStaleTrialCallback(self.max_retry)(study, trials[trial.number])
        done = f"trial {trial.number} of study {study.study_name} marked FAIL"
        if len(study.get_trials(deepcopy=False)) > len(trials):
            return f"{done} and queued again"
        return f"{done}, not queued again (retried {self.max_retry} times)"

    def score(self, cfg: DictConfig, run_dir: Path) -> float:
        """The objective of a trained run: its last logged validation value, or a metric of the
        generated set after sampling and evaluating it (rank 0 only)."""
        metric = self.space.metric
        if metric in LOG_METRICS:
            log = RunDir(run_dir).log()
            if metric not in log or log[metric].isna().all():
                raise D3lmError(f"{run_dir}: no {metric} in the training log (no validation?)")
            return float(log[metric].dropna().iloc[-1])
        assert self.scorer is not None
        samples = sample(cfg, run_dir)  # symbols such as steps=per_token resolve there
        scored = self.scorer(cfg, samples, RunDir(run_dir).metrics)
        return float(scored.sets[GENERATED][metric])

    def follow(self) -> None:
        """Ranks > 0: train each trial rank 0 hands over, until it says stop."""
        while (message := self.team.share(None)) is not None:
            if self.space.from_run is not None:
                continue  # nothing to train: rank 0 samples
            with contextlib.suppress(optuna.TrialPruned):  # rank 0 records it
                self.train(self.config(message["values"], message["number"]), None)


def link_run(cfg: DictConfig, model: Path) -> Path:
    """A run folder for ``cfg`` whose checkpoint is ``model``'s (a hard link where the
    filesystem allows, else a copy), so ``d3lm sample`` and ``evaluate`` work on it."""
    run = RunDir.of(cfg)
    checkpoint = run.last
    if checkpoint.exists():
        raise D3lmError(f"{run} holds a run already; use a new study name")
    write_text(run.config, OmegaConf.to_yaml(cfg))
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    source = RunDir(model).last_checkpoint()
    try:
        os.link(source, checkpoint)
    except OSError:
        shutil.copyfile(source, checkpoint)
    return run.path


def device_overrides(space: Space, overrides: Sequence[str], team: Team) -> list[str]:
    """A trial trains on this worker's ranks only. Lightning's own DDP launcher (``devices`` > 1
    in one process, or ``auto`` on a multi-GPU node) would start processes that re-run the whole
    sweep, so ``auto`` becomes the rank count and any other count must match it."""
    devices = space.compose(list(overrides), {}).trainer.devices
    count = len(devices) if isinstance(devices, ListConfig) else devices
    if count == "auto":
        return [f"trainer.devices={team.local}"]
    if count != team.local:
        raise D3lmError(
            f"trainer.devices={devices} but this worker runs {team.local} process(es) per node: "
            "start multi-device trials with torchrun --nproc-per-node N (sweeps/slurm/ddp.sh)"
        )
    return []


def worker_name() -> str:
    """host:pid, and the SLURM job and array task when there is one (who ran a trial)."""
    job = os.environ.get("SLURM_JOB_ID")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    slurm = f" slurm {job}" + (f"_{task}" if task else "") if job else ""
    return f"{socket.gethostname()}:{os.getpid()}{slurm}"


def open_study(
    space: Space,
    name: str,
    storage_url: str,
    overrides: list[str],
    worker: int = 0,
    heartbeat: int = 60,
    grace: int | None = None,
    max_retry: int | None = 3,
) -> optuna.Study:
    """Create or join the study; a study made from another space or overrides is refused."""
    storage = open_storage(storage_url, heartbeat, grace, max_retry)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            sampler=space.sampler(worker),
            pruner=space.pruner(),
            direction=space.direction,
            load_if_exists=True,
        )
    setup = {
        "space": dict(space.raw),
        "from_run": None if space.from_run is None else str(space.from_run),
        "overrides": [o for o in overrides if o.split("=", 1)[0] not in SITE_KEYS],
        "metric": space.metric,
    }
    for key, value in setup.items():
        old = study.user_attrs.get(key)
        if old is None:
            study.set_user_attr(key, value)
        elif old != value:
            raise D3lmError(
                f"study {name!r} in {mask(storage_url)} was created with another {key} "
                f"({old!r}, this worker: {value!r}); use a new study name"
            )
    return study


def run_worker(
    space: Space,
    study_name: str,
    storage_url: str,
    n_trials: int,
    overrides: Sequence[str] = (),
    worker: int = 0,
    heartbeat: int = 60,
    grace: int | None = None,
    max_retry: int | None = 3,
    echo: Callable[[str], None] = print,
) -> None:
    """Work on the study until it has ``n_trials`` finished trials (see the module doc)."""
    if n_trials < 1 or heartbeat < 1:
        raise D3lmError(f"--n-trials and --heartbeat must be >= 1, got {n_trials}, {heartbeat}")
    team = Team()
    overrides = [*overrides, *device_overrides(space, overrides, team)]
    me = Worker(space, study_name, overrides, team, max_retry)
    try:
        if team.rank == 0:
            lead(me, storage_url, n_trials, worker, heartbeat, grace, echo)
        else:
            me.follow()
    finally:
        team.close()


def lead(
    me: Worker,
    storage_url: str,
    n_trials: int,
    worker: int,
    heartbeat: int,
    grace: int | None,
    echo: Callable[[str], None],
) -> None:
    """Rank 0: run trials until the study has ``n_trials`` finished, then release the others."""
    try:
        study = open_study(
            me.space,
            me.study_name,
            storage_url,
            me.overrides,
            worker,
            heartbeat,
            grace,
            me.max_retry,
        )
        while True:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            finished = sum(t.state in FINISHED for t in trials)
            running = sum(t.state == TrialState.RUNNING for t in trials)
            if finished >= n_trials:
                break
            if finished + running >= n_trials:
                # the last trials run elsewhere: wait, and retry one here if its worker dies
                time.sleep(min(heartbeat, POLL_S))
                continue
            study.optimize(me.objective, n_trials=1, gc_after_trial=True)
    except Interrupted:
        raise  # every rank got the signal and stops by itself: none waits for a message
    except BaseException:
        me.team.share(None)
        raise
    me.team.share(None)
    echo(summary(study, n_trials))


def summary(study: optuna.Study, n_trials: int) -> str:
    counts = {s.name: 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] += 1
    states = ", ".join(f"{v} {k.lower()}" for k, v in counts.items() if v)
    line = f"study {study.study_name}: {states} (target {n_trials} finished)"
    if counts["COMPLETE"]:
        best = study.best_trial
        line += f"; best trial {best.number}: {best.value:.6g} ({best.user_attrs.get('run_dir')})"
    return line
