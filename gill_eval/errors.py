"""User-facing errors.

Every problem a user can cause (bad input file, missing weights, unsupported capability) is raised as a
``GillEvalError`` whose message is one line naming the file, row or key and what is wrong. The CLI turns
it into ``error: <message>`` on stderr and a non-zero exit, without a traceback. OS errors (disk full,
read-only or missing data root, ...) get the same treatment through ``os_error_line``.
"""

from __future__ import annotations

import errno
import os
import re


class GillEvalError(Exception):
    """An error whose message is meant for the user, not a traceback."""

    exit_code: int = 2


class InputError(GillEvalError):
    """A raw file, shard or feature file is malformed (names the file and row/key)."""


class OfflineError(GillEvalError):
    """A weight or statistic is needed but not staged while offline mode is on."""


class ConfigError(GillEvalError):
    """An option, model name or model option is unknown or has the wrong type."""


_OS_FIXES = {
    errno.ENOSPC: "free space there or choose another --data-dir; what was written before is intact",
    errno.EDQUOT: "free space in your quota or choose another --data-dir; what was written before is intact",
    errno.EROFS: "the file system is read-only: choose a writable --data-dir (or GILL_EVAL_DATA)",
    errno.EACCES: "fix the permissions or choose another --data-dir",
    errno.EPERM: "fix the permissions or choose another --data-dir",
    errno.ENOTDIR: "a part of this path is a file, not a folder: choose another --data-dir",
    errno.EISDIR: "this path is a folder where a file was expected: remove or rename it",
    errno.ENOENT: "check the path (a --data-dir, input file or its folder is missing)",
}
_ERRNO_TEXT = re.compile(r"\[errno (\d+)\]", re.IGNORECASE)


def os_error_line(exc: OSError, fallback_path: object) -> str | None:
    """``<path>: <what>; <fix>`` for an OS error (also pyarrow's, whose errno is only in the text).

    ``fallback_path`` (the data root) is named when the error does not say which file it was; None when
    the error carries no errno at all (then it is a bug, and its traceback is worth more than a line).
    """
    code = exc.errno
    if code is None and (match := _ERRNO_TEXT.search(str(exc))):
        code = int(match.group(1))
    if code is None:
        code = next((c for c in _OS_FIXES if os.strerror(c).lower() in str(exc).lower()), None)
    if code is None:
        return None
    path = exc.filename if exc.filename is not None else fallback_path
    fix = _OS_FIXES.get(code, "check the path, its permissions and free space")
    return f"{path}: {os.strerror(code).lower()}; {fix}"
