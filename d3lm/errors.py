"""The one error type for a user's mistake (config, data, checkpoint, plugin parameters, paths).

The CLI prints a ``D3lmError`` as one or two lines with exit code 2 and no traceback (``--debug``
shows it); any other exception is a bug in the suite and keeps its traceback. It subclasses
``ValueError`` so library callers that catch bad input as ``ValueError`` keep working.
"""

from __future__ import annotations


class D3lmError(ValueError):
    """Bad input from the user; the message names the file, record, line or key and the reason."""


class NotFound(D3lmError, FileNotFoundError):
    """A file, folder, dataset, scale or grid the user named is not there."""


class PluginParamError(D3lmError, TypeError):
    """A plugin was given a parameter it does not take, or a value it refuses."""


__all__ = ["D3lmError", "NotFound", "PluginParamError"]
