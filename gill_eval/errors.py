"""User-facing errors.

Every problem a user can cause (bad input file, missing weights, unsupported capability) is raised as a
``GillEvalError`` whose message is one line naming the file, row or key and what is wrong. The CLI turns
it into ``error: <message>`` on stderr and a non-zero exit, without a traceback.
"""

from __future__ import annotations


class GillEvalError(Exception):
    """An error whose message is meant for the user, not a traceback."""

    exit_code: int = 2


class InputError(GillEvalError):
    """A raw file, shard or feature file is malformed (names the file and row/key)."""


class OfflineError(GillEvalError):
    """A weight or statistic is needed but not staged while offline mode is on."""


class ConfigError(GillEvalError):
    """An option, model name or model option is unknown or has the wrong type."""
