"""Score samples against held-out real data and the baselines, on one fixed instrument."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from d3lm.data.fasta import read_fasta
from d3lm.data.samples import read_labelled
from d3lm.evaluate import (
    EvaluateOptions,
    build_extractors,
    check_labels,
    evaluate_samples,
    labels_of,
    provenance,
    write_metrics,
)
from d3lm.io import write_text
from d3lm.metrics.design import classifiers
from d3lm.metrics.motifs import MotifScanner
from d3lm.rundir import CONFUSION, RunDir, provenance_of
from d3lm.stages.results import append_results
from d3lm.stages.train import data_table

GENERATED = "generated"


#: The key of a sample point's metrics.json that records the instrument (not a scored set).
INSTRUMENT = "instrument"


@dataclass(frozen=True)
class Scored:
    """A sample point's metrics: {set: {metric: value}} and the instrument that scored them
    (the feature extractors' provenance, e.g. the oracle's checksum and test accuracy)."""

    sets: dict[str, dict[str, float]]
    instrument: dict[str, Any]


def evaluated(metrics: Path, features: Iterable[str]) -> Scored | None:
    """A sample point's metrics when complete (``fd_`` and ``kid_`` of every requested feature
    space, and the instrument recorded), else None: points scored before KID existed, or
    without a recorded instrument, are scored again from their samples."""
    if not metrics.exists():
        return None
    nested = json.loads(metrics.read_text())
    instrument = nested.pop(INSTRUMENT, None)
    generated = nested.get(GENERATED, {})
    wanted = [f"{d}_{f}" for f in features for d in ("fd", "kid")]
    if instrument is None or not all(m in generated for m in wanted):
        return None
    return Scored(nested, instrument)


@dataclass(frozen=True)
class Data:
    """What a grid's points are scored against: the evaluation split (and its labels, when the
    table has them: per-class rows and the oracle's ceiling) and the training split."""

    reference: list[str]
    reference_labels: list[str] | None
    train: list[str]


class Scorer:
    """Evaluation for a whole grid: data, extractors and baseline rows are built once.

    The real and baseline rows depend on the reference, the sample count and length and the
    seed, not on the model, so they are computed at the first sample point with that key, kept
    in ``runs/<experiment>/baselines/`` and reused by every later point. The real row is scored
    again at every point (with the reference's labels, whether or not the samples have any), so
    the grid's reference rows are the same whichever point wrote them last.
    """

    def __init__(self) -> None:
        self._data: dict[str, Data] = {}
        self._extractors: dict[str, Any] = {}

    def data(self, cfg: DictConfig) -> Data:
        key = json.dumps(
            [
                cfg.data.dataset,
                cfg.evaluate.split,
                cfg.data.valid_fraction,
                cfg.data.test_fraction,
                OmegaConf.to_container(cfg.data.params, resolve=True),
            ]
        )
        if key not in self._data:
            table = data_table(cfg)
            self._data[key] = Data(
                table.loc[table["split"] == cfg.evaluate.split, "sequence"].tolist(),
                labels_of(table, cfg.evaluate.split),
                table.loc[table["split"] == "train", "sequence"].tolist(),
            )
        return self._data[key]

    def options(self, cfg: DictConfig) -> EvaluateOptions:
        return EvaluateOptions.from_config(cfg.evaluate, cfg.seed)

    def baseline_file(
        self, cfg: DictConfig, options: EvaluateOptions, instrument: Mapping[str, Any]
    ) -> Path:
        extractors = self.extractors(cfg, options)
        classes = [list(c.classes) for c in classifiers(extractors).values()]
        data_params = OmegaConf.to_container(cfg.data.params, resolve=True)
        key = {
            "dataset": str(cfg.data.dataset),
            # only when set, so baselines cached before data.params existed keep their names
            **({"data_params": data_params} if data_params else {}),
            "n": cfg.sample.n,
            "bp": cfg.sample.bp,
            "options": [options.features, options.baselines, options.split, options.motifs],
            "seed": options.seed,
            "distances": [dataclasses.asdict(options.kid), dataclasses.asdict(options.intervals)],
            "instrument": dict(instrument),
            # only with a classifying extractor (its class shares are in the rows), so
            # baselines cached before those existed are scored again, and others keep names
            **({"classes": classes} if classes else {}),
        }
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
        name = f"n{cfg.sample.n}-bp{cfg.sample.bp}-s{cfg.seed}-{digest}.json"
        return Path(cfg.runs_dir) / cfg.experiment / "baselines" / name

    def extractors(self, cfg: DictConfig, options: EvaluateOptions) -> dict[str, Any]:
        spec = json.dumps(options.features, sort_keys=True)
        if spec not in self._extractors:
            self._extractors[spec] = build_extractors(options.features, Path(cfg.cache_dir))
        return self._extractors[spec]

    def rows(
        self,
        cfg: DictConfig,
        samples: Path,
        options: EvaluateOptions,
        confusion: Path | None = None,
    ) -> pd.DataFrame:
        """Tidy rows (run, metric, value) of the samples, the real set and ``options``'
        baselines; labelled samples' confusion matrices go to ``confusion``."""
        data = self.data(cfg)
        extractors = self.extractors(cfg, options)
        read = read_labelled(samples)
        check_labels(read, extractors)
        return evaluate_samples(
            read.sequences,
            data.reference,
            data.train,
            extractors,
            options,
            MotifScanner() if options.motifs else None,
            run=GENERATED,
            labels=read.intended,
            reference_labels=data.reference_labels,
            confusion=confusion,
        )

    def __call__(self, cfg: DictConfig, samples: Path, out: Path) -> Scored:
        """Score ``samples``; write ``out`` (metrics.json: {set: {metric: value}} for every
        set, and the instrument)."""
        options = self.options(cfg)
        instrument = provenance(self.extractors(cfg, options))
        cached = self.baseline_file(cfg, options, instrument)
        if cached.exists():
            options.baselines = {}
        rows = self.rows(cfg, samples, options, out.with_name(CONFUSION))
        if not cached.exists():
            write_metrics(rows[rows["run"] != GENERATED], cached)
        sets = json.loads(cached.read_text())
        for name, metric, value in rows.itertuples(index=False):
            sets.setdefault(name, {})[metric] = float(value)
        nested = {**sets, INSTRUMENT: instrument}
        write_text(out, json.dumps(nested, indent=2, sort_keys=True) + "\n")
        return Scored(sets, instrument)


def training_metrics(run_dir: Path) -> dict[str, float]:
    """``val_bpn``: the last validation bound of the run in bits per nucleotide (comparable
    across tokenisers), carried on its generated rows; empty when the run never validated."""
    log = RunDir(run_dir).log()
    if "val/bpn" not in log or log["val/bpn"].isna().all():
        return {}
    return {"val_bpn": float(log["val/bpn"].dropna().iloc[-1])}


def sampling_metrics(fasta: Path) -> dict[str, float]:
    """``nfe``: network evaluations per sequence, and ``sample_s_per_1000``: wall seconds per
    1,000 sequences on the machine that sampled them (its provenance names it), from the
    samples' provenance; empty for samples drawn before provenance was recorded."""
    path = provenance_of(fasta)
    if not path.exists():
        return {}
    info = json.loads(path.read_text(encoding="utf-8"))
    return {"nfe": info["nfe_mean"], "sample_s_per_1000": 1000 * info["wall_s"] / info["n"]}


def evaluate(cfg: DictConfig, run_dir: Path, samples: Path | None = None) -> pd.DataFrame:
    """Score a run's samples, a held-out real set and the baselines; write metrics.json and
    the run's rows in results/. Returns the tidy rows of every set."""
    run = RunDir(run_dir)
    scorer = Scorer()
    rows = scorer.rows(cfg, samples or run.samples, scorer.options(cfg), run.confusion)
    write_metrics(rows, run.metrics)
    generated = rows[rows["run"] == GENERATED]
    append_results(cfg, run.path, dict(zip(generated["metric"], generated["value"], strict=True)))
    return rows


def read_samples(path: Path) -> list[str]:
    return [seq for _, seq in read_fasta(path)]
