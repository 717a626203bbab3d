"""One name -> class registry, shared by every plugin kind.

Configs name plugins by string; ``Registry.build`` turns ``{name: ..., params: {...}}`` into an
instance and fails with the list of known names (or the plugin's accepted parameters) otherwise.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
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


class UnknownPluginError(D3lmError, KeyError):
    """Raised for a name that no plugin of a kind registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps plugin names to classes (or factories) of one kind."""

    def __init__(self, kind: str) -> None:
        if kind in REGISTRIES:
            raise ValueError(f"a registry of kind {kind!r} exists already")
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}
        REGISTRIES[kind] = self

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Class decorator: ``@TOKENIZERS.register("nt6mer")``."""

        def decorate(obj: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} plugin {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorate

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


TOKENIZERS: Registry[Any] = Registry("tokenizer")
SCHEDULES: Registry[Any] = Registry("schedule")
OBJECTIVES: Registry[Any] = Registry("objective")
SAMPLERS: Registry[Any] = Registry("sampler")
BACKBONES: Registry[Any] = Registry("backbone")
DATASETS: Registry[Any] = Registry("dataset")
TASKS: Registry[Any] = Registry("task")

UNMASK_ORDERS: Registry[Any] = Registry("unmask_order")
COMMIT_COUNTS: Registry[Any] = Registry("commit_count")
REMASKERS: Registry[Any] = Registry("remasker")
FEATURE_EXTRACTORS: Registry[Any] = Registry("feature_extractor")
GENERATORS: Registry[Any] = Registry("generator")
LOGGERS: Registry[Any] = Registry("logger")
