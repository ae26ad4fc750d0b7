"""Run metadata written next to every result: versions, git hash, host and time."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

from gill_eval import __version__

_LIBRARIES = ("torch", "open_clip_torch", "lpips", "torch-fidelity", "diffusers", "transformers", "numpy", "pyarrow")


@lru_cache(maxsize=1)
def git_hash() -> str | None:
    """The commit of the gill-eval checkout (None for an installed wheel)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def run_metadata() -> dict[str, Any]:
    """What produced a result, for its provenance block."""
    return {
        "gill_eval_version": __version__,
        "git_hash": git_hash(),
        "libraries": library_versions(),
        "python": platform.python_version(),
        "host": platform.node(),
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
