"""Test cases read from the plugin registries, never from a list of names.

A kind's contract tests are parametrised at collection time with :func:`examples`: every
registered plugin (built in, imported, or loaded through an entry point) with every set of params
it declares (``Registry.register(name, examples=...)``), so a new plugin is tested with no edit
here or in the tests.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import markov_sequences

from d3lm.plugins import load_plugins
from d3lm.registry import REGISTRIES, TOKENIZERS

#: What a tokenizer that learns from data (bpe) is fitted on before its contract tests.
FIT_CORPUS = markov_sequences(300, 200, seed=3)


def registered(kind: str) -> list[str]:
    """Every registered plugin name of ``kind``, entry points loaded."""
    load_plugins()
    return REGISTRIES[kind].names()


def case_id(name: str, params: dict[str, Any]) -> str:
    return "-".join([name, *(f"{k}={v}" for k, v in params.items())])


def examples(kind: str) -> list[Any]:
    """``pytest.param((name, params))`` for every registered plugin of ``kind`` and every example
    params it declares, with ids ``name[-key=value...]`` (one value: fixtures take these too)."""
    registry = REGISTRIES[kind]
    return [
        pytest.param((name, params), id=case_id(name, params))
        for name in registered(kind)
        for params in registry.examples(name)
    ]


def build_tokenizer(name: str, params: dict[str, Any]) -> Any:
    """A tokenizer as a run builds it: fitted on :data:`FIT_CORPUS` first (a no-op for fixed
    ones)."""
    return TOKENIZERS.build(name, TOKENIZERS.get(name).fit(FIT_CORPUS, params))
