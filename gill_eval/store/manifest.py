"""The manifest of a prepared dataset or stage output.

It records what produced the shards (schema version, source files with sha256, options, counts and the
gill-eval version), so that results can be traced and a rerun with other inputs is detected. It is
written atomically and, like done markers, only after the shards it describes, and records each shard
(size, rows, head/tail hash: ``store.verify``) so that a reader can check the folder before using it.
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
from gill_eval.store.verify import check_output, describe_output, output_files

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
    files: list[dict[str, Any]] = field(default_factory=list)  # filled by write_manifest

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
    """Write ``manifest.json`` into ``folder`` atomically, recording the shard files it describes."""
    path = Path(folder) / MANIFEST_NAME
    manifest.files = [describe_output(folder, p) for p in output_files(folder)]
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
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as exc:
        fix = (f"rerun the `gill-eval prepare` command that made {Path(folder).name}" if Path(folder).parent.name == "datasets"
               else "rerun the command that made this folder")
        raise InputError(f"{path}: malformed manifest ({exc}); {fix}") from exc


def verify_manifest(folder: str | os.PathLike[str], manifest: Manifest, fix: str) -> None:
    """Check the folder's shard files against what its manifest recorded; ``fix`` says how to repair.

    Manifests older than this record (no ``files``) are accepted as they are.
    """
    if not manifest.files:
        return
    recorded = {f.get("path") for f in manifest.files if isinstance(f, dict)}
    for record in manifest.files:
        if (why := check_output(folder, record)) is not None:
            raise InputError(f"{why}: the folder changed after its manifest was written; {fix}")
    extra = [p for p in output_files(folder) if str(p.relative_to(folder)) not in recorded]
    if extra:
        raise InputError(f"{extra[0]}: not listed in {Path(folder) / MANIFEST_NAME}; {fix}")
