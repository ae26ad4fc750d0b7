"""Names that become path components, and the data-root boundary of every removal.

A split, dataset or benchmark name, a tag or a model name read from an input file, an option or a plugin
ends up as a folder or file name under the data root. Each is checked here against one strict pattern
before it reaches a path, so a crafted ``x/../../elsewhere`` is refused in one line instead of steering a
write or an ``--overwrite`` removal outside the root (docs/reliability.md, "Names and the data root").
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from gill_eval.errors import InputError

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""Letters, digits, '.', '_', '-'; starts with a letter or digit; at most 128 characters."""


def check_name(kind: str, value: object, source: str) -> str:
    """``value`` if it is a safe path component, else a one-line ``InputError`` naming ``source``.

    ``kind`` says what the name is (``split``, ``dataset``, ...); ``source`` where it came from (a file and
    key, an option, an entry point).
    """
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value) or ".." in value:
        raise InputError(f"{source}: {kind} {value!r} is not a safe name (letters, digits, '.', '_', '-', starting "
                         "with a letter or digit, no '..', at most 128 characters); rename it")
    return value


def inside(path: Path, root: Path, action: str) -> Path:
    """``path`` resolved (symlinks followed), refused unless it lies strictly inside ``root`` (resolved)."""
    resolved, base = Path(path).resolve(), Path(root).resolve()
    if resolved == base or not resolved.is_relative_to(base):
        raise InputError(f"{path}: resolves to {resolved}, outside the data root {base}; refusing to {action} it")
    return resolved


def remove_tree(path: Path, root: Path) -> None:
    """``shutil.rmtree(path)``, only for a real folder inside ``root``: a path that resolves elsewhere (through
    a symlink or '..') or a symlink itself is refused, never followed."""
    path = Path(path)
    if path.is_symlink():
        raise InputError(f"{path}: is a symbolic link (to {path.resolve()}); refusing to remove what it points to")
    inside(path, root, "remove")
    shutil.rmtree(path)
