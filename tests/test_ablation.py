"""Ablation grids: expansion, wildcards, symbols, skip/resume of points, tidy rows end to end."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from d3lm.config import load_config
from d3lm.errors import D3lmError
from d3lm.experiments.ablation import GRIDS_DIR, Plan, check_plugins, load_grid, run_grid
from d3lm.experiments.grid import Shard
from d3lm.experiments.reuse import check_same_sampling, check_same_training
from d3lm.registry import SAMPLERS, SCHEDULES, TOKENIZERS
from d3lm.rundir import RunDir, SamplePoint
from d3lm.stages import sample as sample_stage
from d3lm.stages import score as score_stage
from d3lm.stages import train as train_stage
from d3lm.stages.results import replace_rows
from d3lm.stages.sample import resolve_symbols
from d3lm.stages.score import Scorer, read_samples
from d3lm.stages.train import train_point

GRIDS = sorted(GRIDS_DIR.glob("*.yaml"))


def write_grid(tmp_path: Path, grid: dict, name: str = "g") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def test_product_of_axes_and_seeds(tmp_path: Path) -> None:
    grid = load_grid(
        write_grid(
            tmp_path,
            {
                "seeds": 2,
                "train": {
                    "schedule": {"key": "diffusion.schedule.name", "values": ["linear", "cosine"]},
                    "tok": {
                        "values": [
                            {"label": "nt", "set": {"tokenizer.name": "nt6mer"}},
                            {
                                "label": "k3",
                                "set": {"tokenizer": {"name": "kmer", "params": {"k": 3}}},
                            },
                        ]
                    },
                },
                "sample": {
                    "sample.sampler.params.steps": [5, "per_token"],
                    "temperature": {"key": "sample.sampler.params.temperature", "values": [1.0]},
                },
            },
        )
    )
    train = grid.train_points()
    assert [(p.name, s) for p, s in train] == [
        (f"schedule-{sch}_tok-{t}", s)
        for sch in ("linear", "cosine")
        for t in ("nt", "k3")
        for s in (0, 1)
    ]
    k3 = train[2][0]
    assert dict(k3.overrides) == {
        "diffusion.schedule.name": "linear",
        "tokenizer.name": "kmer",
        "tokenizer.params.k": 3,
    }
    assert [p.name for p in grid.sample_points()] == [
        "sample.sampler.params.steps-5_temperature-1.0",
        "sample.sampler.params.steps-per_token_temperature-1.0",
    ]
    assert load_grid(grid.source, seeds=1).seeds == [0]
    assert load_grid(grid.source, seeds=[4, 7]).seeds == [4, 7]
    assert load_grid(write_grid(tmp_path, {"train": {}}, "empty")).seeds == [0, 1, 2]


@pytest.fixture
def user_schedule():
    """A schedule plugin registered by 'a user' for the duration of one test."""
    name = "test_user_schedule"
    SCHEDULES.register(name)(SCHEDULES.get("linear"))
    yield name
    SCHEDULES._entries.pop(name)


def test_wildcard_expands_to_every_registered_plugin(tmp_path: Path, user_schedule: str) -> None:
    path = write_grid(tmp_path, {"train": {"diffusion.schedule.name": ["cosine", "*"]}})
    labels = [s.label for s in load_grid(path).train[0].settings]
    assert labels[0] == "cosine"
    assert sorted(labels) == SCHEDULES.names()
    assert user_schedule in labels and len(labels) == len(set(labels))
    check_plugins(load_grid(path))


def test_grid_errors_name_the_problem(tmp_path: Path) -> None:
    bad_key = write_grid(tmp_path, {"train": {"optim.lr": "*"}}, "a")
    with pytest.raises(ValueError, match=r"optim\.lr"):
        load_grid(bad_key)
    unknown = load_grid(write_grid(tmp_path, {"train": {"tokenizer.name": ["nope"]}}, "b"))
    with pytest.raises(ValueError, match="'nope', not a registered tokenizer"):
        check_plugins(unknown)
    with pytest.raises(ValueError, match="repeats a label"):
        load_grid(write_grid(tmp_path, {"sample": {"sample.n": [1, 1]}}, "c"))
    with pytest.raises(ValueError, match="unknown grid keys"):
        load_grid(write_grid(tmp_path, {"axes": {}}, "d"))
    with pytest.raises(FileNotFoundError, match="known grids"):
        load_grid("no_such_grid")


@pytest.mark.parametrize("path", GRIDS, ids=[p.stem for p in GRIDS])
def test_shipped_grids_expand_to_valid_configs(path: Path) -> None:
    grid = load_grid(path)
    assert grid.seeds == [0, 1, 2]
    plan = Plan(grid, "micro")
    for train, seed in grid.train_points():
        for sp in grid.sample_points():
            cfg = plan.config(train, seed, sp)
            assert cfg.experiment.endswith("-micro") and cfg.run == f"{train.name}-s{seed}"
            assert cfg.seed == cfg.sample.seed == seed
            for key, value in {**train.overrides, **sp.overrides}.items():
                assert OmegaConf.select(cfg, key) == value


def test_sampling_axes_expand_every_sampler_and_steps_per_token() -> None:
    sampling = load_grid("sampling")
    assert [p.labels["sampler"] for p in sampling.sample_points()] == list(SAMPLERS.names())
    steps = [p.labels["steps"] for p in load_grid("steps").sample_points()]
    assert steps[-1] == "per_token" and steps[:-1] == ["5", "10", "25", "50", "100", "200"]
    for path in GRIDS:
        check_plugins(load_grid(path))


@pytest.mark.parametrize(
    ("tokenizer", "params", "bp", "tokens"),
    [
        ("nt6mer", {}, 200, 35),
        ("nt6mer", {}, 2048, 343),
        ("kmer", {"k": 3}, 60, 20),
    ],
)
def test_per_token_resolves_from_the_layout(tokenizer, params, bp, tokens) -> None:
    cfg = load_config(
        overrides=[
            f"tokenizer.name={tokenizer}",
            f"sample.bp={bp}",
            "sample.sampler.params.steps=per_token",
            *[f"tokenizer.params.{k}={v}" for k, v in params.items()],
        ]
    )
    assert resolve_symbols(cfg, TOKENIZERS.build(tokenizer, params)) == tokens
    assert cfg.sample.sampler.params.steps == tokens
    # the honest count: positions with more than one legal token (not <cls>)
    layout = TOKENIZERS.build(tokenizer, params).layout(bp)
    assert tokens == sum(int(row.sum()) > 1 for row in layout)


def test_sei_weights_add_sfid_to_every_point() -> None:
    grid = load_grid("main", seeds=[1])
    cfg = Plan(grid, "micro", sei_weights="w/sei.pth").config(*grid.train_points()[1])
    assert list(cfg.evaluate.features) == ["kmer", "oracle", "sei"]
    assert cfg.evaluate.params.sei.weights == "w/sei.pth"
    assert cfg.diffusion.objective.name == "autoregressive"
    assert not cfg.diffusion.objective.params  # base.yaml leaves objective params to the plugin
    options = Scorer().options(cfg)
    assert options.features["sei"] == {"weights": "w/sei.pth"} and options.seed == 1


def test_replace_rows_replaces_a_point(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    row = {"point": "a", "metric": "m", "value": 1.0}
    replace_rows(path, pd.DataFrame([row, {**row, "point": "b"}]))
    replace_rows(path, pd.DataFrame([{**row, "value": 2.0}]))
    out = pd.read_csv(path).sort_values("point")
    assert out["point"].tolist() == ["a", "b"] and out["value"].tolist() == [2.0, 1.0]


def _write_points(path: Path, prefix: str, count: int, start) -> None:
    start.wait()
    for i in range(count):
        row = {"point": f"{prefix}{i}", "metric": "m", "value": float(i)}
        replace_rows(path, pd.DataFrame([row]))


def test_concurrent_shards_lose_no_rows(tmp_path: Path) -> None:
    """Two processes merging rows into one results file at once: every row survives."""
    path = tmp_path / "results" / "r.csv"
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    workers = [ctx.Process(target=_write_points, args=(path, p, 60, start)) for p in "ab"]
    for w in workers:
        w.start()
    start.set()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    points = pd.read_csv(path)["point"]
    assert sorted(points) == sorted(f"{p}{i}" for p in "ab" for i in range(60))


def test_shards_partition_the_training_points(tmp_path: Path) -> None:
    grid = load_grid(
        write_grid(tmp_path, {"experiment": "x", "seeds": 2, "train": {"lr": [1, 2, 3]}})
    )
    points = grid.train_points()
    shards = [Shard.parse(f"{i}/4") for i in range(4)]
    picked = [pos for s in shards for pos, _ in s.select(points)]
    assert sorted(picked) == list(range(len(points)))  # every point once, none twice
    assert [pos for pos, _ in shards[1].select(points)] == [1, 5]
    assert Shard().select(points) == list(enumerate(points))


@pytest.mark.parametrize("text", ["2/2", "1", "a/b", "0/0", "-1/3"])
def test_bad_shard_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--shard"):
        Shard.parse(text)


# ----------------------------------------------------------------------------- end to end


@pytest.fixture
def micro_plan(tmp_path: Path, dna_table: Path, one_thread) -> Plan:
    grid = write_grid(
        tmp_path,
        {
            "experiment": "e2e",
            "seeds": 1,
            "config": {"evaluate": {"features": ["kmer"], "motifs": False}},
            "by_scale": {"micro": {"sample.n": 12}},
            "sample": {"steps": {"key": "sample.sampler.params.steps", "values": [3, "per_token"]}},
        },
    )
    overrides = [
        f"data.dataset={dna_table}",
        f"runs_dir={tmp_path / 'runs'}",
        f"results_dir={tmp_path / 'results'}",
        f"cache_dir={tmp_path / 'cache'}",
    ]
    return Plan(load_grid(grid), "micro", overrides)


@pytest.mark.slow
def test_micro_grid_end_to_end_skips_and_restarts(
    micro_plan: Plan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "runs" / "e2e-micro" / "default-s0"
    # an aborted first session that never checkpointed: restarted from scratch, not an error
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "logs" / "version_0").mkdir(parents=True)
    # train 10 of 30 steps first: the grid run must resume it, not start again
    short = Plan(micro_plan.grid, "micro", [*micro_plan.overrides, "trainer.max_steps=10"])
    train_point(short.config(*short.grid.train_points()[0]), RunDir(run_dir))
    assert RunDir(run_dir).trained_steps() == 10
    lines: list[str] = []
    run_grid(micro_plan, dry_run=True, echo=lines.append)
    assert lines == [
        f"[1/1] {run_dir}: training partial (10/30)",
        "    steps-3: missing",
        "    steps-per_token: missing",
    ]
    results = run_grid(micro_plan, echo=lines.append)
    assert RunDir(run_dir).trained_steps() == 30
    assert sorted(p.name for p in (run_dir / "logs").iterdir()) == ["version_0", "version_1"]
    assert results == tmp_path / "results" / "e2e-micro.csv"
    rows = pd.read_csv(results, dtype={"steps": str})

    # tidy rows: every axis a column, every set, one row per (point, set, metric)
    assert {
        "experiment",
        "point",
        "set",
        "steps",
        "seed",
        "n",
        "bp",
        "tokens",
        "metric",
        "value",
        "git",
    } <= set(rows.columns)
    generated = rows[rows["set"] == "generated"]
    assert sorted(generated["steps"].unique()) == ["3", "per_token"]
    assert set(generated["tokens"]) == {10}  # 60 bp as nt6mer
    assert {"fd_kmer", "gc_ratio_gc_at", "fraction_unique", "nearest_mean"} <= set(rows["metric"])
    assert {"kid_kmer", "kid_kmer_std"} <= set(rows["metric"])  # KID beside every FD
    bpn = generated.loc[generated["metric"] == "val_bpn", "value"]
    assert len(bpn) == 2 and bpn.iloc[0] == RunDir(run_dir).log()["val/bpn"].dropna().iloc[-1]
    assert set(rows["set"]) == {"generated", "real", "uniform", "shuffle", "markov"}
    assert not rows.duplicated(["point", "set", "metric"]).any()
    assert rows[rows["set"] != "generated"]["steps"].isna().all()
    assert (rows["n"] == 12).all() and (rows["bp"] == 60).all() and (rows["seed"] == 0).all()
    # baselines computed once (one cache file) and identical in every point's metrics.json
    assert len(list((tmp_path / "runs" / "e2e-micro" / "baselines").iterdir())) == 1
    m3, mt = (
        json.loads((run_dir / "samples" / p / "metrics.json").read_text())
        for p in ("steps-3", "steps-per_token")
    )
    assert m3["markov"] == mt["markov"] and m3["real"] == mt["real"]
    # samples have the requested length; per_token (10 steps) differs from 3 steps
    fasta = {
        p: read_samples(run_dir / "samples" / p / "samples.fasta")
        for p in ("steps-3", "steps-per_token")
    }
    assert all(len(s) == 60 for seqs in fasta.values() for s in seqs)
    assert fasta["steps-3"] != fasta["steps-per_token"]

    # rerun: nothing is trained, sampled or scored again, and no row is duplicated
    def forbidden(*args, **kwargs):
        raise AssertionError("a finished point was redone")

    monkeypatch.setattr(train_stage, "train", forbidden)
    monkeypatch.setattr(sample_stage, "sample", forbidden)
    monkeypatch.setattr(score_stage, "evaluate_samples", forbidden)
    run_grid(micro_plan, echo=lines.append)
    again = pd.read_csv(results, dtype={"steps": str})
    pd.testing.assert_frame_equal(
        again.sort_values(["point", "set", "metric"]).reset_index(drop=True),
        rows.sort_values(["point", "set", "metric"]).reset_index(drop=True),
    )

    # a half-finished point (samples written, evaluation lost) is scored again, not resampled
    monkeypatch.undo()
    monkeypatch.setattr(train_stage, "train", forbidden)
    monkeypatch.setattr(sample_stage, "sample", forbidden)
    (run_dir / "samples" / "steps-3" / "metrics.json").unlink()
    (run_dir / "samples" / "steps-3" / ".metrics.json.x.tmp").write_text("{half")
    run_grid(micro_plan, echo=lines.append)
    redone = json.loads((run_dir / "samples" / "steps-3" / "metrics.json").read_text())
    assert redone == m3

    # --rescore (after a metric or oracle change) scores every sampled point again, the same
    # way, and trains and samples nothing
    scored = []
    evaluate = score_stage.evaluate_samples
    monkeypatch.setattr(
        score_stage, "evaluate_samples", lambda *a, **k: scored.append(a) or evaluate(*a, **k)
    )
    run_grid(micro_plan, echo=lines.append, rescore=True)
    assert len(scored) == 2
    assert json.loads((run_dir / "samples" / "steps-3" / "metrics.json").read_text()) == m3

    # the same point name with other sample settings (another grid on these runs) is refused
    other = Plan(micro_plan.grid, "micro", [*micro_plan.overrides, "sample.sampler.name=p2"])
    with pytest.raises(ValueError, match="sampled with other settings"):
        run_grid(other, dry_run=True, echo=lines.append)
    longer = Plan(micro_plan.grid, "micro", [*micro_plan.overrides, "optim.lr=0.1"])
    with pytest.raises(ValueError, match="trained with other optim"):
        run_grid(longer, dry_run=True, echo=lines.append)


def test_sample_points_are_reused_across_worker_counts_but_not_other_settings(tmp_path):
    """Worker processes never change the sequences (counter-based draws), so a point sampled
    with another ``sample.workers`` is reused; any setting that changes them is refused."""
    cfg = load_config("micro")
    point = SamplePoint(tmp_path)
    saved = OmegaConf.merge(cfg.sample, {"workers": 1, "progress": False})
    OmegaConf.save(saved, point.settings)
    check_same_sampling(cfg, point)
    cfg.sample.seed = 1
    with pytest.raises(D3lmError, match="other settings"):
        check_same_sampling(cfg, point)


def test_points_saved_before_a_key_existed_are_reused_at_its_default(tmp_path):
    """A sample point (or run) written before ``sample.labels``/``guidance`` (or ``conditioning``)
    existed compares equal to the same settings now: a key is added with the default that keeps
    what runs did before it; another value for the new key is still refused."""
    cfg = load_config("micro")
    point = SamplePoint(tmp_path / "point")
    point.settings.parent.mkdir(parents=True)
    old = OmegaConf.to_container(cfg.sample)
    del old["labels"], old["guidance"]
    OmegaConf.save(OmegaConf.create(old), point.settings)
    check_same_sampling(cfg, point)
    cfg.sample.guidance = 2.0
    with pytest.raises(D3lmError, match="other settings"):
        check_same_sampling(cfg, point)

    run = RunDir(tmp_path / "run")
    saved = OmegaConf.to_container(load_config("micro"))
    del saved["conditioning"]
    run.last.parent.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(saved), run.config)
    torch.save({"global_step": 1}, run.last)
    check_same_training(load_config("micro"), run.path)
    with pytest.raises(D3lmError, match="trained with other conditioning"):
        check_same_training(load_config("micro", overrides=["conditioning.name=label"]), run.path)
