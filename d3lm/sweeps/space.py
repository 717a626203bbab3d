"""Search-space files: config keys with Optuna distributions, the objective, sampler and pruner.

A space file (``sweeps/<name>.yaml``)::

    scale: tiny                                  # experiments/scales/<scale>.yaml
    objective: {metric: val/bpn, direction: minimize}
    sampler: {name: tpe, seed: 0}                # an Optuna sampler, snake_case without
                                                 # "Sampler" (tpe, random, qmc, cma_es, ...);
                                                 # other keys: its kwargs
    pruner: {name: median, n_warmup_steps: 200}  # an Optuna pruner likewise (median, percentile,
                                                 # hyperband, successive_halving, ...) or none
    config: {trainer.max_steps: 600}             # fixed overrides for every trial
    params:
      optim.lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
      optim.warmup_steps: {type: int, low: 0, high: 200, step: 50}
      diffusion.schedule.name: [linear, cosine]  # a list is a categorical
      sample.sampler.params.steps: {type: categorical, choices: [10, 25, per_token]}
      tokens:                                    # coupled overrides, chosen by label
        type: categorical
        choices:
          - {label: nt6mer, set: {tokenizer.name: nt6mer}}
          - {label: k3, set: {tokenizer.name: kmer, tokenizer.params.k: 3}}

Keys are the dotted keys of ``d3lm train key=value``; ``"*"`` among the choices of a plugin key
(``tokenizer.name``, ...) means every registered plugin of that kind. The whole file is checked
against the composed config of its scale before any trial, so a typo fails at once with the file
and the entry in the message. The objective is ``val/bpn`` or ``val/loss`` (the last validation
value of the run's log) or a metric of the generated set in ``metrics.json``: then each trial also
samples and evaluates, on the *validation* split unless ``config`` sets ``evaluate.split``, so that
tuning never looks at the test split.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig

from d3lm.config import dotlist, flatten, load_config, load_run_config, scale_path
from d3lm.errors import D3lmError
from d3lm.metrics.scores import names
from d3lm.plugins import load_plugins
from d3lm.preflight import check_layers, check_run_config, named
from d3lm.registry import PLUGIN_KEYS, WILDCARD
from d3lm.rundir import RunDir
from d3lm.specfiles import describe, expect_mapping, read_mapping
from d3lm.stages.sample import SYMBOLS
from d3lm.sweeps.algorithms import PRUNERS, SAMPLER_DEFAULTS, SAMPLERS

#: Objectives read from the run's Lightning log (the last validation value).
LOG_METRICS = ("val/bpn", "val/loss")

#: Metrics of the generated set in metrics.json besides ``fd_<feature>`` (d3lm.evaluate.Evaluator).
EVAL_METRICS = names("set", "train")
MOTIF_METRICS = names("motifs")


#: Keys a trial of ``--from-run`` may search: they change sampling and scoring, not the model.
SAMPLING_KEYS = ("sample.", "evaluate.")
#: Set by the sweep for every trial (run folder identity), never by a space file.
RESERVED_KEYS = ("experiment", "run", "resume")
#: Tuning defaults that a space file may override: never tune on the test split.
SWEEP_DEFAULTS = {"evaluate.split": "valid"}

FILE_KEYS = {"scale", "objective", "sampler", "pruner", "config", "params"}


@dataclass(frozen=True)
class Param:
    """One searched entry: ``name`` is its config key, or a label for coupled choices."""

    name: str
    kind: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    coupled: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # label -> overrides

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)
        if self.kind == "int":
            step = int(self.step or 1)
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=step, log=self.log
            )
        return trial.suggest_categorical(self.name, list(self.choices))

    def overrides(self, value: Any) -> dict[str, Any]:
        """The config keys a suggested value sets."""
        return dict(self.coupled[value]) if self.coupled else {self.name: value}

    def candidates(self) -> list[dict[str, Any]]:
        """Override sets that cover every key and extreme value, for validation."""
        if self.kind == "categorical":
            return [self.overrides(c) for c in self.choices]
        cast = float if self.kind == "float" else int  # a float range on an int key is an error
        return [{self.name: cast(self.low)}, {self.name: cast(self.high)}]


@dataclass(frozen=True)
class Space:
    source: str
    scale: str | None
    metric: str
    direction: str
    params: tuple[Param, ...]
    config: Mapping[str, Any]
    sampler_spec: Mapping[str, Any]
    pruner_spec: Mapping[str, Any]
    raw: Mapping[str, Any]
    from_run: Path | None = None  # trials sample this trained run instead of training

    @property
    def evaluates(self) -> bool:
        """Whether a trial samples and evaluates (an objective from metrics.json)."""
        return self.metric not in LOG_METRICS

    def sampler(self, worker: int = 0) -> optuna.samplers.BaseSampler:
        """The seeded sampler; worker ``i`` draws with seed + i so that workers started together
        do not propose the same random start-up points."""
        spec = dict(self.sampler_spec)
        name, seed = spec.pop("name"), spec.pop("seed")
        return SAMPLERS[name](**{**SAMPLER_DEFAULTS.get(name, {}), **spec}, seed=seed + worker)

    def pruner(self) -> optuna.pruners.BasePruner:
        spec = dict(self.pruner_spec)
        return PRUNERS[spec.pop("name")](**spec)

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """{param name: value} for one trial (labels for coupled choices)."""
        return {p.name: p.suggest(trial) for p in self.params}

    def trial_config(
        self, values: Mapping[str, Any], study: str, number: int, overrides: list[str]
    ) -> DictConfig:
        """The run config of trial ``number``: ``runs/<study>/trial-<number>``."""
        searched: dict[str, Any] = {}
        for param in self.params:
            searched.update(param.overrides(values[param.name]))
        identity = {"experiment": study, "run": f"trial-{number}"}
        return self.compose(overrides, {**searched, **identity})

    def compose(self, overrides: list[str], searched: Mapping[str, Any]) -> DictConfig:
        layers = [*dotlist({**SWEEP_DEFAULTS, **self.config}), *overrides, *dotlist(searched)]
        return self.layer(layers, "command-line overrides")

    def layer(self, overrides: list[str], source: str) -> DictConfig:
        """``overrides`` on the scale (or the ``--from-run`` config); errors name ``source``."""
        if self.from_run is not None:
            return load_run_config(self.from_run, overrides, overrides_source=source)
        return load_config(self.scale, overrides=overrides, overrides_source=source)


# -------------------------------------------------------------------------------------- parsing


def load_space(
    path: str | Path, overrides: list[str] | None = None, from_run: Path | None = None
) -> Space:
    """Parse and validate a space file; any problem is a D3lmError naming the file and entry.

    ``overrides`` (``key=value``, for every trial) are validated with it. With ``from_run`` (a
    trained run folder) trials sample that model, so only ``sample.*`` and ``evaluate.*`` keys
    may be searched and the objective must come from metrics.json; the scale is ignored.
    """
    load_plugins()
    path = Path(path)
    where = f"space file {path}"
    raw = read_mapping(path, "space file", FILE_KEYS)
    scale = raw.get("scale")
    if scale is not None:
        if not isinstance(scale, str):
            raise D3lmError(f"{where}: scale: expected a scale name, got {describe(scale)}")
        try:
            scale_path(scale)
        except FileNotFoundError as err:
            raise D3lmError(f"{where}: scale: {err}") from None
    objective = raw.get("objective") or {}
    if not isinstance(objective, Mapping) or set(objective) - {"metric", "direction"}:
        raise D3lmError(f"{where}: objective: expected {{metric: NAME, direction: minimize}}")
    metric = objective.get("metric", "val/bpn")
    if not isinstance(metric, str):
        raise D3lmError(f"{where}: objective.metric: expected a name, got {describe(metric)}")
    direction = str(objective.get("direction", "minimize"))
    if direction not in ("minimize", "maximize"):
        raise D3lmError(f"{where}: objective.direction: {direction!r} is not minimize or maximize")
    params_raw = raw.get("params") or {}
    expect_mapping(params_raw, f"{where}: params", "a mapping of config key -> distribution")
    if not params_raw:
        raise D3lmError(f"{where}: params: the space searches nothing (no params)")
    config = expect_mapping(raw.get("config") or {}, f"{where}: config", "a mapping of config keys")
    space = Space(
        source=str(path),
        scale=scale,
        metric=metric,
        direction=direction,
        params=tuple(_param(where, str(n), spec) for n, spec in params_raw.items()),
        config=flatten(config),
        sampler_spec=_spec(where, "sampler", raw.get("sampler"), "tpe", SAMPLERS),
        pruner_spec=_spec(where, "pruner", raw.get("pruner"), "median", PRUNERS),
        raw=raw,
        from_run=None if from_run is None else Path(from_run),
    )
    _check(space, list(overrides or []))
    return space


def _param(file: str, name: str, spec: Any) -> Param:
    where = f"{file}: params.{name}"
    if isinstance(spec, list) or spec == WILDCARD:
        spec = {"type": "categorical", "choices": spec}
    if not isinstance(spec, Mapping):
        raise D3lmError(f"{where}: expected a list of choices or {{type: float|int|categorical}}")
    kind = spec.get("type")
    allowed = {
        "float": {"type", "low", "high", "step", "log"},
        "int": {"type", "low", "high", "step", "log"},
        "categorical": {"type", "choices"},
    }
    if kind not in allowed:
        raise D3lmError(f"{where}: type {kind!r} is not one of {sorted(allowed)}")
    extra = set(spec) - allowed[kind]
    if extra:
        raise D3lmError(f"{where}: unknown fields {sorted(extra)} for a {kind}")
    if kind == "categorical":
        return _categorical(where, name, spec.get("choices"))
    low, high, step, log = spec.get("low"), spec.get("high"), spec.get("step"), spec.get("log")
    number = int if kind == "int" else (int, float)
    for field_name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, number):
            raise D3lmError(
                f"{where}: {field_name} must be a{'n int' if kind == 'int' else ' number'}"
            )
    if low > high:
        raise D3lmError(f"{where}: low {low} > high {high}")
    if log is not None and not isinstance(log, bool):
        raise D3lmError(f"{where}: log must be true or false")
    if log and low <= 0:
        raise D3lmError(f"{where}: log needs low > 0, got {low}")
    if step is not None:
        if log:
            raise D3lmError(f"{where}: step and log exclude each other")
        if isinstance(step, bool) or not isinstance(step, number) or step <= 0:
            raise D3lmError(
                f"{where}: step must be a positive {'int' if kind == 'int' else 'number'}"
            )
    return Param(name, kind, low=low, high=high, step=step, log=bool(log))


def _categorical(where: str, name: str, choices: Any) -> Param:
    if choices == WILDCARD:
        choices = [WILDCARD]
    if not isinstance(choices, list) or not choices:
        raise D3lmError(f"{where}: a categorical needs a non-empty list of choices")
    if WILDCARD in choices:
        if name not in PLUGIN_KEYS:
            raise D3lmError(f"{where}: '*' needs a plugin key ({', '.join(PLUGIN_KEYS)})")
        choices = PLUGIN_KEYS[name].expand(choices)
    bad = [c for c in choices if c is not None and not isinstance(c, (bool, int, float, str))]
    if any(isinstance(c, Mapping) for c in choices):
        # coupled overrides, chosen by label; a scalar among them sets the entry's own key
        coupled: dict[str, dict[str, Any]] = {}
        for choice in choices:
            if not isinstance(choice, Mapping):
                coupled[str(choice)] = {name: choice}
            elif set(choice) != {"label", "set"} or not isinstance(choice["set"], Mapping):
                raise D3lmError(f"{where}: coupled choice {dict(choice)} needs `label` and `set`")
            else:
                coupled[str(choice["label"])] = flatten(choice["set"])
        if len(coupled) != len(choices):
            raise D3lmError(f"{where}: repeated labels among the choices")
        return Param(name, "categorical", choices=tuple(coupled), coupled=coupled)
    if bad:
        raise D3lmError(f"{where}: choices must be scalars or {{label, set}} mappings; got {bad}")
    if len({json.dumps(c) for c in choices}) != len(choices):
        raise D3lmError(f"{where}: repeated choices {choices}")
    return Param(name, "categorical", choices=tuple(choices))


def _spec(
    where: str, entry: str, spec: Any, default: str, known: Mapping[str, type]
) -> dict[str, Any]:
    """A sampler or pruner entry ({name, kwargs...}), built once here so bad kwargs fail now."""
    if isinstance(spec, str):
        spec = {"name": spec}
    spec = dict(expect_mapping(spec or {}, f"{where}: {entry}", "a name or {name: ...}"))
    spec.setdefault("name", default)
    name = spec["name"]
    if not isinstance(name, str) or name not in known:
        raise D3lmError(f"{where}: {entry}: unknown {entry} {name!r} (known: {', '.join(known)})")
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    if entry == "sampler":
        seed = kwargs.setdefault("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise D3lmError(f"{where}: sampler.seed must be an int, got {seed!r}")
        spec["seed"] = seed
        kwargs = {**SAMPLER_DEFAULTS.get(name, {}), **kwargs}
    accepted = inspect.signature(known[name]).parameters
    unknown = set(kwargs) - set(accepted)
    if unknown:
        raise D3lmError(f"{where}: {entry}: {name} takes no {sorted(unknown)}")
    try:
        known[name](**kwargs)
    except (TypeError, ValueError, ImportError) as err:  # ImportError: an optional dependency
        raise D3lmError(f"{where}: {entry}: {err}") from None
    return spec


def _check(space: Space, overrides: list[str]) -> None:
    """Every key against the composed config of the scale; plugin names against registries;
    value ranges and plugin builds at every extreme of every range (a space whose range admits
    a value a run refuses is an error now, not a failed trial later); the objective against
    what a run of that config logs or evaluates."""
    where = f"space file {space.source}"
    for key in RESERVED_KEYS:
        if key in space.config or any(key in c for p in space.params for c in p.candidates()):
            raise D3lmError(f"{where}: {key!r} is set by the sweep for each trial")
    for param in space.params:
        for candidate in param.candidates():
            for key, value in candidate.items():
                registry = PLUGIN_KEYS.get(key)
                symbol = isinstance(value, str) and value in SYMBOLS
                if registry is not None and value not in registry:
                    raise D3lmError(
                        f"{where}: params.{param.name}: {key}={value!r} is not a registered "
                        f"{registry.kind} (known: {', '.join(registry.names())})"
                    )
                if symbol and not key.startswith("sample.sampler.params."):
                    raise D3lmError(f"{where}: params.{param.name}: {value!r} is a sampler symbol")
    # each entry alone first, so that an error names the entry that holds the bad key or value
    layers = [named(f"{where}: config", {**SWEEP_DEFAULTS, **space.config})]
    layers.append(("command-line overrides", overrides))
    layers += [named(f"{where}: params.{p.name}", c) for p in space.params for c in p.candidates()]
    check_layers(space.layer, layers)
    try:
        cfg = space.compose(overrides, {})
        check_run_config(cfg, SYMBOLS)
    except (D3lmError, TypeError) as err:
        raise D3lmError(f"{where}: config: {err}") from None
    for param in space.params:
        for candidate in param.candidates():
            try:  # builds the plugins too: their names and params are checked
                check_run_config(space.compose(overrides, candidate), SYMBOLS)
            except (D3lmError, TypeError) as err:
                raise D3lmError(f"{where}: params.{param.name}: {err}") from None
    known = [*LOG_METRICS, *(f"fd_{f}" for f in cfg.evaluate.features), *EVAL_METRICS]
    if cfg.evaluate.motifs:
        known += MOTIF_METRICS
    if space.metric not in known:
        raise D3lmError(
            f"{where}: objective.metric: unknown metric {space.metric!r} (known with this "
            f"config: {', '.join(known)})"
        )
    if space.from_run is not None:
        RunDir(space.from_run).last_checkpoint()
        if not space.evaluates:
            raise D3lmError(
                f"{where}: objective.metric: {space.metric!r} comes from training; with "
                f"--from-run {space.from_run} trials only sample (use a metrics.json metric)"
            )
        for param in space.params:
            keys = {k for c in param.candidates() for k in c}
            trained = sorted(k for k in keys if not k.startswith(SAMPLING_KEYS))
            if trained:
                raise D3lmError(
                    f"{where}: params.{param.name}: {', '.join(trained)} would need training; "
                    f"with --from-run only {' and '.join(f'{k}*' for k in SAMPLING_KEYS)} keys"
                )
    if space.evaluates and space.pruner_spec["name"] != "none":
        raise D3lmError(
            f"{where}: pruner: {space.pruner_spec['name']!r} prunes on the validation bound, "
            f"which is not the objective {space.metric!r}; use pruner: none"
        )
