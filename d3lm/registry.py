"""One name -> class registry, shared by every plugin kind.

Configs name plugins by string; ``Registry.build`` turns ``{name: ..., params: {...}}`` into an
instance and fails with the list of known names (or the plugin's accepted parameters) otherwise.

Every list of plugins is derived from here, never kept by hand: a registry names the package that
registers its built-in plugins (``home``, imported by :func:`d3lm.plugins.load_plugins`) and the
config keys that name one of its plugins (``config_keys``, where a grid or search space may write
``"*"`` for every registered name); a plugin declares the constructor params its contract tests
build it with (``examples``). A plugin registered anywhere, an entry point included, is therefore
listed, swept by ``"*"`` and tested with no other edit.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

from d3lm.errors import D3lmError, PluginParamError
from d3lm.params import check_values

T = TypeVar("T")


def takes_keyword(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` (for a module, its ``forward``) has a parameter ``name``, so a caller can
    use an optional keyword (a model's ``at``) only where it is offered; False for builtins and
    C extensions without a signature."""
    try:
        return name in inspect.signature(getattr(fn, "forward", fn)).parameters
    except (TypeError, ValueError):
        return False


#: Every registry created, by plugin kind; ``d3lm plugins`` lists these.
REGISTRIES: dict[str, Registry[Any]] = {}

#: A grid or space value that stands for every registered plugin of the key's kind.
WILDCARD = "*"


class UnknownPluginError(D3lmError, KeyError):
    """Raised for a name that no plugin of a kind registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps plugin names to classes (or factories) of one kind.

    ``home``: the package whose import registers the built-in plugins of this kind;
    ``config_keys``: the dotted config keys whose value names one of them."""

    def __init__(self, kind: str, home: str | None = None, config_keys: Sequence[str] = ()) -> None:
        if kind in REGISTRIES:
            raise ValueError(f"a registry of kind {kind!r} exists already")
        self.kind, self.home, self.config_keys = kind, home, tuple(config_keys)
        self._entries: dict[str, Callable[..., T]] = {}
        self._examples: dict[str, tuple[dict[str, Any], ...]] = {}
        REGISTRIES[kind] = self

    def register(
        self, name: str, examples: Sequence[Mapping[str, Any]] = ({},)
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Class decorator: ``@TOKENIZERS.register("nt6mer")``. ``examples``: the params the
        kind's contract tests build the plugin with, one test case each (default: its own
        defaults), so that no test keeps a list of names."""

        def decorate(obj: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} plugin {name!r} is registered twice")
            self._entries[name] = obj
            self._examples[name] = tuple(dict(e) for e in examples)
            return obj

        return decorate

    def unregister(self, name: str) -> None:
        """Forget plugin ``name`` (a test's throwaway plugin)."""
        self.get(name)
        del self._entries[name], self._examples[name]

    def examples(self, name: str) -> list[dict[str, Any]]:
        """The params plugin ``name`` declared for its contract tests."""
        self.get(name)
        return [dict(e) for e in self._examples[name]]

    def expand(self, values: Sequence[Any]) -> list[Any]:
        """``values`` with :data:`WILDCARD` replaced by every registered name not listed."""
        listed = [v for v in values if v != WILDCARD]
        if len(listed) == len(values):
            return list(values)
        return listed + [n for n in self.names() if n not in listed]

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise UnknownPluginError(
                f"unknown {self.kind} {name!r}; known {self.kind} plugins: {known}"
            ) from None

    def build(self, name: str, params: Mapping[str, Any] | None = None, **extra: Any) -> T:
        """Instantiate plugin ``name`` with ``params`` (from a config) and ``extra`` (from code).

        A parameter the plugin does not take, or a value its constructor refuses (``ValueError``),
        or a ``TypeError`` (a value of the wrong type) is a :class:`PluginParamError` naming the
        plugin, so the CLI reports it as bad input; ``--debug`` shows the original."""
        factory = self.get(name)
        kwargs = {**(params or {}), **extra}
        self.check(name, kwargs, partial=False)
        try:
            return factory(**kwargs)
        except (ValueError, TypeError) as err:
            if isinstance(err, D3lmError):
                raise
            raise PluginParamError(f"{self.kind} {name!r}: {err}") from err

    def check(self, name: str, params: Mapping[str, Any], partial: bool = True) -> None:
        """Fail unless plugin ``name`` exists, takes every key of ``params`` (and, unless
        ``partial``, gets every required one) and every value fits the parameter's declared type
        and range (:mod:`d3lm.params`); builds nothing, so a command can check its whole config
        before it starts working."""
        factory = self.get(name)
        signature = inspect.signature(factory)
        try:
            signature.bind_partial(**params) if partial else signature.bind(**params)
        except TypeError as err:
            accepted = ", ".join(signature.parameters) or "(none)"
            raise PluginParamError(f"{self.kind} {name!r}: {err}; it accepts: {accepted}") from None
        problem = check_values(factory, params)
        if problem is not None:
            raise PluginParamError(f"{self.kind} {name!r}: {problem}")

    def names(self) -> list[str]:
        return sorted(self._entries)

    def describe(self) -> dict[str, str]:
        """Name -> first docstring line, for ``d3lm plugins``."""
        return {
            name: (inspect.getdoc(obj) or "").split("\n", 1)[0]
            for name, obj in sorted(self._entries.items())
        }

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


class PluginKeys(Mapping[str, Registry[Any]]):
    """Config key -> the registry whose plugin it names, read from the registries' ``config_keys``
    at each use, so a kind created later (by an entry point) counts too."""

    def _table(self) -> dict[str, Registry[Any]]:
        return {key: registry for registry in REGISTRIES.values() for key in registry.config_keys}

    def __getitem__(self, key: str) -> Registry[Any]:
        return self._table()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


#: Config keys that name a plugin: a ``"*"`` value there expands to every registered name.
PLUGIN_KEYS: Mapping[str, Registry[Any]] = PluginKeys()

TOKENIZERS: Registry[Any] = Registry("tokenizer", "d3lm.tokenizers", ["tokenizer.name"])
SCHEDULES: Registry[Any] = Registry("schedule", "d3lm.diffusion", ["diffusion.schedule.name"])
OBJECTIVES: Registry[Any] = Registry("objective", "d3lm.diffusion", ["diffusion.objective.name"])
SAMPLERS: Registry[Any] = Registry("sampler", "d3lm.sampling", ["sample.sampler.name"])
BACKBONES: Registry[Any] = Registry("backbone", "d3lm.model", ["model.preset"])
DATASETS: Registry[Any] = Registry("dataset", "d3lm.data")  # data.dataset may also be a file
TASKS: Registry[Any] = Registry("task", "d3lm.tasks")  # tasks may also be files

UNMASK_ORDERS: Registry[Any] = Registry(
    "unmask_order", "d3lm.sampling", ["sample.sampler.params.order"]
)
COMMIT_COUNTS: Registry[Any] = Registry(
    "commit_count", "d3lm.sampling", ["sample.sampler.params.count"]
)
REMASKERS: Registry[Any] = Registry("remasker", "d3lm.sampling", ["sample.sampler.params.remasker"])
KV_CACHES: Registry[Any] = Registry("kv_cache", "d3lm.sampling", ["sample.sampler.params.kv_cache"])
FEATURE_EXTRACTORS: Registry[Any] = Registry("feature_extractor", "d3lm.metrics")
GENERATORS: Registry[Any] = Registry("generator", "d3lm.baselines")
LOGGERS: Registry[Any] = Registry("logger", "d3lm.lit.loggers")  # trainer.loggers: a list
CONDITIONINGS: Registry[Any] = Registry("conditioning", "d3lm.conditioning", ["conditioning.name"])
