"""Raw source files given as a local path or a URL, and JSON loading with one-line errors.

A URL source is downloaded once into ``<data root>/sources/<dataset>/`` (atomically, so a killed download
is redone; outside the dataset folder, so ``--overwrite`` keeps it) and reused by reruns; its sha256 goes
into the manifest like a local file's.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gill_eval.errors import ConfigError, InputError, OfflineError
from gill_eval.store import atomic_path, sha256_file

SOURCE_TIMEOUT_S = 3600.0
SOURCE_MAX_BYTES = 20e9
READ_TIMEOUT_S = 60.0


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
        download(spec, target)
    return Source(target, spec, sha256_file(target))


def _limit(name: str, default: float) -> float:
    text = os.environ.get(name)
    try:
        value = float(text) if text else default
    except ValueError:
        raise ConfigError(f"{name}={text!r}: expected a number") from None
    if value <= 0:
        raise ConfigError(f"{name}={text!r}: must be positive")
    return value


def download(url: str, target: Path) -> None:
    """Fetch ``url`` into ``target`` atomically, within an overall deadline and a size limit.

    ``GILL_EVAL_SOURCE_TIMEOUT`` (seconds, default 3600) bounds the whole transfer, not only each read;
    ``GILL_EVAL_SOURCE_MAX_BYTES`` (default 20 GB) bounds the size, whatever the server announces. The
    temporary file is removed on every exit path (error, Ctrl-C, SIGTERM via the CLI). docs/reliability.md.
    """
    timeout = _limit("GILL_EVAL_SOURCE_TIMEOUT", SOURCE_TIMEOUT_S)
    max_bytes = int(_limit("GILL_EVAL_SOURCE_MAX_BYTES", SOURCE_MAX_BYTES))
    deadline = time.monotonic() + timeout
    try:
        with urllib.request.urlopen(url, timeout=min(timeout, READ_TIMEOUT_S)) as response, \
                atomic_path(target) as tmp, open(tmp, "wb") as out:
            announced = response.headers.get("Content-Length")
            if announced is not None and announced.isdigit() and int(announced) > max_bytes:
                raise InputError(f"{url}: announces {int(announced)} bytes, over the source limit of {max_bytes} "
                                 "(GILL_EVAL_SOURCE_MAX_BYTES); download it yourself and pass its path")
            size = 0
            while block := response.read1(1 << 20):
                size += len(block)
                if size > max_bytes:
                    raise InputError(f"{url}: more than {max_bytes} bytes, over the source limit "
                                     "(GILL_EVAL_SOURCE_MAX_BYTES); download it yourself and pass its path")
                if time.monotonic() > deadline:
                    raise InputError(f"{url}: download not finished after {timeout:g} s ({size} bytes so far; "
                                     "GILL_EVAL_SOURCE_TIMEOUT); retry later or download it yourself and pass its path")
                out.write(block)
            if announced is not None and announced.isdigit() and size != int(announced):
                raise InputError(f"{url}: the server announced {announced} bytes but sent {size}; retry later")
    except (OSError, http.client.HTTPException) as exc:  # urllib's HTTP/URL errors, timeouts, broken responses
        raise InputError(f"{url}: download failed ({exc})") from exc


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
        raw = data if data is not None else path.read_bytes()
        line = raw[:exc.start].count(b"\n") + 1
        raise InputError(f"{path}: line {line}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                         "save the file as UTF-8") from exc
    except (ValueError, RecursionError) as exc:  # an integer of over 4300 digits; nesting deeper than Python's stack
        raise InputError(f"{path}: not usable JSON ({str(exc).split(':')[0]})") from exc


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
