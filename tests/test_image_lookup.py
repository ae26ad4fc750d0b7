"""``ImageShards.images`` reads only the requested rows: same images as a whole-table read, bounded reads.

Oracle for the content: every shard read whole with pyarrow, the last 'success' row of a key winning (the
key -> shard index keeps the last shard, the last row in it). Bounded reads, checked without timing:
* the bytes of row groups that hold no requested key are never read (they are overwritten with garbage in
  the file, which a read of the whole image column fails on);
* one image of a large single-row-group shard never materialises the image column (the peak of Arrow's
  memory pool during the call stays far below the column's size: about the one data page holding it).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from gill_eval.errors import InputError
from gill_eval.store import write_shard
from gill_eval.store.images import ImageShards

SCHEMA = pa.schema([("key", pa.string()), ("image", pa.binary()), ("status", pa.string())])
_POOLS: list[pa.MemoryPool] = []  # kept alive: a buffer allocated through a proxy pool frees through it


def _png(seed: int, side: int = 12) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _write(path: Path, rows: list[tuple[str, bytes | None, str]], row_group_size: int | None = None) -> None:
    table = pa.Table.from_pylist([{"key": k, "image": b, "status": s} for k, b, s in rows], schema=SCHEMA)
    write_shard(table, path, row_group_size=row_group_size)


def _store(folder: Path) -> None:
    """Three shards: several row groups, failed rows, a key stored twice in a shard and one in two shards."""
    first = [(f"a{i:02d}", _png(i), "success") for i in range(20)]
    first[5] = ("a05", None, "failed")
    first[11] = ("a11", b"not an image", "failed")
    first[3] = ("dup", _png(100), "success")
    first[15] = ("dup", _png(101), "success")  # the later row wins
    first[17] = ("cross", _png(102), "success")
    _write(folder / "00000.parquet", first, row_group_size=6)
    second = [(f"b{i:02d}", _png(200 + i), "success") for i in range(10)]
    second[4] = ("cross", _png(103), "success")  # the later shard wins
    second[7] = ("a05", _png(104), "success")  # failed in the first shard, stored here
    _write(folder / "00001.parquet", second)
    _write(folder / "00002.parquet", [(f"c{i:02d}", _png(300 + i), "success") for i in range(7)], row_group_size=3)


def _oracle(folder: Path) -> dict[str, bytes]:
    latest: dict[str, bytes] = {}
    for shard in sorted(folder.glob("*.parquet")):
        for row in pq.read_table(shard).to_pylist():
            if row["status"] == "success":
                latest[row["key"]] = row["image"]
    return latest


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_scattered_keys_across_shards_and_row_groups_equal_a_whole_read(tmp_path: Path) -> None:
    _store(tmp_path)
    oracle = _oracle(tmp_path)
    shards = ImageShards(tmp_path)
    assert shards.available() == set(oracle) and "a11" not in oracle
    wanted = ["c06", "a00", "dup", "b09", "a05", "a19", "cross", "c00", "a12", "b03", "a12"]
    got = shards.images(wanted)
    assert sorted(got) == sorted(set(wanted))
    for key in set(wanted):
        assert np.array_equal(np.asarray(got[key]), _pixels(oracle[key])), key
    assert np.array_equal(np.asarray(got["dup"]), _pixels(_png(101)))
    assert np.array_equal(np.asarray(got["cross"]), _pixels(_png(103)))
    everything = shards.images(oracle)
    assert all(np.array_equal(np.asarray(everything[k]), _pixels(v)) for k, v in oracle.items())
    with pytest.raises(InputError, match="a11"):
        shards.images(["a00", "a11"])


def _spoil_image_chunks(path: Path, groups: list[int]) -> None:
    """Overwrite the image column's bytes of ``groups`` in place (footer and other columns untouched)."""
    meta = pq.ParquetFile(path).metadata
    column = meta.schema.to_arrow_schema().get_field_index("image")
    data = bytearray(path.read_bytes())
    for group in groups:
        chunk = meta.row_group(group).column(column)
        start = min(o for o in (chunk.dictionary_page_offset, chunk.data_page_offset) if o is not None)
        data[start:start + chunk.total_compressed_size] = b"\xff" * chunk.total_compressed_size
    path.write_bytes(bytes(data))


def test_row_groups_without_a_requested_key_are_never_read(tmp_path: Path) -> None:
    _store(tmp_path)
    oracle = _oracle(tmp_path)
    _spoil_image_chunks(tmp_path / "00000.parquet", [0, 1, 3])  # rows 0-5, 6-11, 18-19; group 2 is rows 12-17
    with pytest.raises(OSError):  # the spoiling is real: a whole-column read fails
        pq.read_table(tmp_path / "00000.parquet", columns=["image"])
    got = ImageShards(tmp_path).images(["a12", "a14", "dup", "cross", "b01"])
    for key in ("a12", "a14", "dup", "cross", "b01"):
        assert np.array_equal(np.asarray(got[key]), _pixels(oracle[key])), key


def test_one_image_of_a_large_shard_does_not_materialise_the_column(tmp_path: Path) -> None:
    """8,192 rows in one row group; a pyarrow writer puts up to 1,024 rows in a data page, the unit a reader
    must decompress whole, so one early row costs about one page (an eighth of the column), not the column."""
    filler = np.random.default_rng(0)
    rows = [(f"k{i:05d}", _png(i) if i == 2 else filler.bytes(2048), "success") for i in range(8192)]
    _write(tmp_path / "00000.parquet", rows)
    column_bytes = sum(len(b) for _, b, _ in rows)
    shards = ImageShards(tmp_path)
    shards.available()  # the key index (key/status columns only) is built outside the measured call
    pool = pa.proxy_memory_pool(pa.default_memory_pool())
    _POOLS.append(pool)
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    try:
        got = shards.images(["k00002"])
    finally:
        pa.set_memory_pool(previous)
    assert np.array_equal(np.asarray(got["k00002"]), _pixels(rows[2][1]))
    assert 0 < pool.max_memory() < column_bytes / 4, (pool.max_memory(), column_bytes)
