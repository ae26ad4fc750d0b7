"""Reading feature folders back: CLIP features as arrays, SD targets memory-mapped without copies.

Below every package that reads features (models read the GILL image index through it; docs/architecture.md);
``gill_eval.features`` writes the folders.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from gill_eval.errors import InputError
from gill_eval.store import iter_batches, read_manifest, verify_manifest
from gill_eval.store.names import check_name
from gill_eval.store.root import data_root

#: The stage configuration recorded beside a feature folder's shards (checked on resume).
CONFIG_NAME = "_config.json"


def feature_dir(kind: str, dataset: str) -> Path:
    """``<data_root>/features/<kind>/<dataset>``."""
    kind, dataset = check_name("feature kind", kind, "features"), check_name("dataset", dataset, "--dataset")
    return data_root() / "features" / kind / dataset


def require_complete(folder: Path, command: str) -> None:
    """A clear error unless every unit of a feature folder is done (its manifest is written last)."""
    if not (folder / "manifest.json").is_file():
        raise InputError(f"{folder}: features are missing or incomplete; run `{command}` first")
    verify_manifest(folder, read_manifest(folder), f"run `{command}` to recompute the broken shard")


@dataclass
class FeatureBatch:
    """Rows of one record batch: keys, per-row success, and the embeddings (zeros where failed)."""

    keys: list[str]
    ok: np.ndarray
    embeddings: np.ndarray


def _values(column: pa.FixedSizeListArray, dtype: type[np.generic], shape: tuple[int, ...]) -> np.ndarray:
    """A numpy view of a fixed-size-list column's values (no copy; honours both arrays' offsets)."""
    width = column.type.list_size
    child = column.values  # the whole child array, ignoring the list array's own offset
    start = child.offset + column.offset * width
    return np.frombuffer(child.buffers()[1], dtype=dtype, count=len(column) * width,
                         offset=start * np.dtype(dtype).itemsize).reshape((len(column), *shape))


def iter_clip_features(folder: str | Path) -> Iterator[FeatureBatch]:
    """Stream a ``features clip`` folder (Parquet) in key order."""
    for batch in iter_batches(Path(folder), columns=["key", "status", "embedding"]):
        col = batch.column("embedding")
        dim = col.type.list_size
        yield FeatureBatch(batch.column("key").to_pylist(),
                           np.asarray(batch.column("status").to_pylist()) == "success",
                           _values(col, np.float32, (dim,)))


def iter_sd_text(folder: str | Path) -> Iterator[FeatureBatch]:
    """Stream a ``features sd-text`` folder: each batch's ``embeddings`` is an (n, 77, 768) float16 view of
    the memory-mapped file (read-only, no copy; keep it only while iterating or copy what you keep)."""
    shards = sorted(Path(folder).glob("[0-9]*.arrow"))
    if not shards:
        raise InputError(f"{folder}: no sd-text shards")
    for path in shards:
        # Not closed explicitly: the views handed out keep the mapping alive through their buffers.
        reader = pa.ipc.open_file(pa.memory_map(str(path)))
        field = reader.schema.field("embedding")
        shape = tuple(int(x) for x in field.metadata[b"shape"].decode().split(","))
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            yield FeatureBatch(batch.column("key").to_pylist(),
                               np.asarray(batch.column("status").to_pylist()) == "success",
                               _values(batch.column("embedding"), np.float16, shape))
