"""What a finished output looked like, and whether it still does.

Done markers and manifests record each output file as ``{path, bytes, rows, head_tail_sha256}``: its
size, its row count (Parquet footer or Arrow IPC batches; null for other files) and the sha256 of its
first and last 64 KiB. Checking costs a stat, a footer read and 128 KiB per file, whatever its size, and
catches what happens to files at rest: truncation, deletion, a shard rewritten with a row less, a tail
overwritten. It is not a full content hash (a changed byte in the middle of a large file goes unseen);
see docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

SAMPLE = 64 * 1024


def _head_tail_sha256(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        digest.update(fh.read(SAMPLE))
        if size > SAMPLE:
            fh.seek(max(SAMPLE, size - SAMPLE))
            digest.update(fh.read(SAMPLE))
    return digest.hexdigest()


def file_rows(path: Path) -> int | None:
    """Rows of a Parquet or Arrow IPC file (from its metadata), None for other files; raises if unreadable."""
    if path.suffix == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    if path.suffix == ".arrow":
        with pa.memory_map(str(path)) as source:
            reader = pa.ipc.open_file(source)
            return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    return None


def _relative(out_dir: Path, path: Path) -> str:
    try:
        return str(path.relative_to(out_dir))
    except ValueError:
        return str(path)


def describe_output(out_dir: str | os.PathLike[str], path: str | os.PathLike[str]) -> dict[str, Any]:
    """The record of one output file (its path relative to ``out_dir`` when it lies inside)."""
    target = Path(path)
    size = target.stat().st_size
    return {"path": _relative(Path(out_dir), target), "bytes": size, "rows": file_rows(target),
            "head_tail_sha256": _head_tail_sha256(target, size)}


def check_output(out_dir: str | os.PathLike[str], record: dict[str, Any]) -> str | None:
    """Why the file ``record`` describes no longer matches it (missing, resized, unreadable, edited), or None."""
    try:
        path = Path(out_dir) / record["path"]
        want_bytes, want_rows, want_hash = record["bytes"], record.get("rows"), record.get("head_tail_sha256")
    except (KeyError, TypeError):
        return f"its record {record!r} is malformed"
    if not path.is_file():
        return f"{path} is missing"
    size = path.stat().st_size
    if size != want_bytes:
        return f"{path} has {size} bytes, {want_bytes} when it was written (truncated or replaced)"
    try:
        rows = file_rows(path)
    except (pa.ArrowInvalid, OSError) as exc:
        return f"{path} is unreadable ({str(exc).splitlines()[0]})"
    if want_rows is not None and rows != want_rows:
        return f"{path} has {rows} rows, {want_rows} when it was written"
    if want_hash is not None and _head_tail_sha256(path, size) != want_hash:
        return f"{path} changed since it was written (content hash differs)"
    return None


def output_files(folder: str | os.PathLike[str], skip: tuple[str, ...] = ("download",)) -> list[Path]:
    """The shard files of a stage folder: ``*.parquet``/``*.arrow`` in it and in its sub-folders, except
    hidden, ``_``-prefixed (markers, locks) and ``skip`` ones (img2dataset's working copy)."""
    root = Path(folder)
    found: list[Path] = []
    for sub in [root, *sorted(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []:
        if sub != root and (sub.name.startswith((".", "_")) or sub.name in skip):
            continue
        found += sorted(p for p in sub.iterdir() if p.suffix in (".parquet", ".arrow") and p.is_file()
                        and not p.name.startswith((".", "_")))
    return found
