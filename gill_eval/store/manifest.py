"""The manifest of a prepared dataset or stage output.

It records what produced the shards (schema version, source files with sha256, options, counts and the
gill-eval version), so that results can be traced and a rerun with other inputs is detected. It is
written atomically and, like done markers, only after the shards it describes.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gill_eval import __version__
from gill_eval.errors import InputError
from gill_eval.store.atomic import atomic_write_json, sha256_file

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1


@dataclass
class Manifest:
    """What a folder of shards holds and how it was made."""

    dataset: str
    options: dict[str, Any] = field(default_factory=dict)
    sources: list[dict[str, str]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    gill_eval_version: str = __version__
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))

    def add_source(self, path: str | os.PathLike[str], origin: str | None = None) -> None:
        """Record a source file with its sha256 (and where it came from, e.g. a URL)."""
        entry = {"path": str(path), "sha256": sha256_file(path)}
        if origin is not None:
            entry["origin"] = origin
        self.sources.append(entry)

    def content_hash(self) -> str:
        """A hash of what determines the content (sources, options, counts), not of the timestamp."""
        key = {"dataset": self.dataset, "options": self.options, "sources": [s.get("sha256", s.get("path")) for s in self.sources],
               "counts": self.counts, "schema_version": self.schema_version}
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def write_manifest(folder: str | os.PathLike[str], manifest: Manifest) -> Path:
    """Write ``manifest.json`` into ``folder`` atomically."""
    path = Path(folder) / MANIFEST_NAME
    atomic_write_json(path, asdict(manifest))
    return path


def read_manifest(folder: str | os.PathLike[str]) -> Manifest:
    """Read the manifest of a prepared folder; a clear error when it is missing or malformed."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise InputError(f"{path}: no manifest; run the matching `gill-eval prepare` command first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Manifest(**data)
    except (json.JSONDecodeError, TypeError) as exc:
        raise InputError(f"{path}: malformed manifest ({exc})") from exc
