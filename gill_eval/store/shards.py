"""Parquet shards: atomic writes and streaming reads.

Shards are named ``{index:05d}.parquet`` (the order in which they are read), written whole through
``atomic_path`` so a killed writer never leaves a readable partial shard. Readers stream record batches
so that memory stays constant in the dataset size.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gill_eval.errors import InputError
from gill_eval.store.atomic import TMP_PREFIX, atomic_path


def shard_name(index: int) -> str:
    """The file name of shard ``index``; zero-padded so that lexical order is numeric order."""
    return f"{index:05d}.parquet"


def write_shard(table: pa.Table, path: str | os.PathLike[str], row_group_size: int | None = None) -> Path:
    """Write ``table`` to ``path`` atomically and return the path."""
    target = Path(path)
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_size)
    return target


def list_shards(folder: str | os.PathLike[str]) -> list[Path]:
    """The Parquet shards in ``folder`` in name order, ignoring temporaries and hidden files."""
    root = Path(folder)
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.glob("*.parquet") if not p.name.startswith((TMP_PREFIX, ".", "_")) and p.is_file()
    )


def _open(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet shard ({exc})") from exc


def iter_batches(
    shards: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    columns: list[str] | None = None,
    batch_size: int = 1024,
) -> Iterator[pa.RecordBatch]:
    """Stream record batches from a folder of shards or an explicit list of shard paths."""
    paths = list_shards(shards) if isinstance(shards, (str, os.PathLike)) else [Path(p) for p in shards]
    for path in paths:
        pf = _open(path)
        if columns is not None:
            missing = [c for c in columns if c not in pf.schema_arrow.names]
            if missing:
                raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
        yield from pf.iter_batches(batch_size=batch_size, columns=columns)


def iter_rows(
    shards: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    columns: list[str] | None = None,
    batch_size: int = 1024,
) -> Iterator[dict[str, Any]]:
    """Stream rows as dicts (convenience over ``iter_batches``; still constant memory)."""
    for batch in iter_batches(shards, columns=columns, batch_size=batch_size):
        yield from batch.to_pylist()


def count_rows(shards: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> int:
    """Total row count from Parquet footers, without reading data."""
    paths = list_shards(shards) if isinstance(shards, (str, os.PathLike)) else [Path(p) for p in shards]
    return sum(_open(p).metadata.num_rows for p in paths)
