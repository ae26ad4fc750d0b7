"""Where data and caches live.

The data root comes from ``--data-dir``, else ``GILL_EVAL_DATA``, else the platform's user data folder.
It is never inside the installed package, so upgrades and read-only installs are safe. Caches
(reference statistics, staged weights records) follow ``GILL_EVAL_CACHE`` / ``XDG_CACHE_HOME``.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from gill_eval.store.names import check_name, remove_tree

_override: Path | None = None


def set_data_root(path: str | os.PathLike[str] | None) -> None:
    """Set the data root for this process (the CLI's global ``--data-dir``)."""
    global _override
    _override = Path(path).expanduser().resolve() if path is not None else None


def data_root() -> Path:
    """The folder under which every prepared dataset and stage output lives."""
    if _override is not None:
        return _override
    env = os.environ.get("GILL_EVAL_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return Path(platformdirs.user_data_dir("gill-eval", appauthor=False))


def dataset_dir(name: str) -> Path:
    """The folder of one prepared dataset (``<root>/datasets/<name>``); ``name`` must be a safe name."""
    return data_root() / "datasets" / check_name("dataset", name, "dataset name")


def remove_in_root(path: str | os.PathLike[str]) -> None:
    """Remove the folder ``path``, which must resolve inside the data root (``names.remove_tree``)."""
    remove_tree(Path(path), data_root())


def cache_root() -> Path:
    """The cache folder for reference statistics and weight records (outside the package)."""
    env = os.environ.get("GILL_EVAL_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    return Path(platformdirs.user_cache_dir("gill-eval", appauthor=False))
