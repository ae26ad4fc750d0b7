"""Raw source files given as a local path or a URL, and JSON loading with one-line errors.

A URL source is downloaded once into ``<data root>/sources/<dataset>/`` (atomically, so a killed download
is redone; outside the dataset folder, so ``--overwrite`` keeps it) and reused by reruns; its sha256 goes
into the manifest like a local file's.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gill_eval.errors import InputError, OfflineError
from gill_eval.store import atomic_path, sha256_file


@dataclass(frozen=True)
class Source:
    """A raw input file on disk, where it came from, and its sha256."""

    path: Path
    origin: str | None
    sha256: str

    def record(self) -> dict[str, str]:
        """The manifest's entry for this source."""
        entry = {"path": str(self.path), "sha256": self.sha256}
        if self.origin is not None:
            entry["origin"] = self.origin
        return entry


def is_url(text: str) -> bool:
    return urllib.parse.urlparse(text).scheme in ("http", "https")


def _is_loopback(url: str) -> bool:
    return urllib.parse.urlparse(url).hostname in ("127.0.0.1", "localhost", "::1")


def resolve_source(spec: str, download_dir: Path) -> Source:
    """A local file as is, or a URL downloaded into ``download_dir`` (reused when already there)."""
    if not is_url(spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise InputError(f"{spec}: no such file")
        return Source(path, None, sha256_file(path))
    name = Path(urllib.parse.urlparse(spec).path).name or "source"
    target = download_dir / f"{hashlib.sha256(spec.encode('utf-8')).hexdigest()[:12]}-{name}"  # one file per URL
    if not target.is_file():
        from gill_eval.models.weights import is_offline  # one offline rule for weights and data

        if is_offline() and not _is_loopback(spec):
            raise OfflineError(f"{spec}: offline mode is on; download the file and pass its path instead")
        try:
            with urllib.request.urlopen(spec, timeout=60) as response, atomic_path(target) as tmp:
                with open(tmp, "wb") as out:
                    shutil.copyfileobj(response, out, length=1 << 20)
        except OSError as exc:
            raise InputError(f"{spec}: download failed ({exc})") from exc
    return Source(target, spec, sha256_file(target))


def load_json(path: Path, data: bytes | None = None) -> Any:
    """Parse a JSON file (or its already-read bytes) with an error naming the file, line and column."""
    try:
        if data is None:
            with open(path, "rb") as fh:
                return json.load(fh)
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def require(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``obj[key]`` checked for presence and type; the error names the file location ``where``."""
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise InputError(f"{where}: missing key {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise InputError(f"{where}: key {key!r} should be {names}, got {type(value).__name__}")
    return value
