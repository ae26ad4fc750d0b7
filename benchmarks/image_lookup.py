"""Reading a few images by key from an img2dataset-sized shard: ``ImageShards.images`` beside a whole-column read.

One shard of ``--rows`` rows (default 10,000, img2dataset's shard size) in one row group, each image
``--image-kb`` KB (random bytes standing in for JPEGs; only the requested rows are real PNGs, the only ones
decoded). For ``--keys`` keys (the first, and spread over the shard), one run measures:

* ``naive``: the earlier lookup, ``pq.read_table`` of the key/image/status columns and a key filter;
* ``images``: ``gill_eval.store.images.ImageShards.images`` (only the requested rows' data pages, streamed).

For each: wall seconds and the peak of Arrow's memory pool during the call (``ProxyMemoryPool``). The key
index (key/status columns) is built before either is timed. Usage: ``python benchmarks/image_lookup.py``;
prints one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gill_eval.store import write_shard  # noqa: E402
from gill_eval.store.images import ImageShards, decode_image  # noqa: E402


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def naive(shard: Path, keys: list[str]) -> dict[str, Image.Image]:
    """The lookup before: the whole image column of the shard, filtered to the keys."""
    table = pq.read_table(shard, columns=["key", "image", "status"])
    mask = pc.and_(pc.is_in(table["key"], pa.array(keys)), pc.equal(table["status"], "success"))
    return {row["key"]: decode_image(row["image"], row["key"]) for row in table.filter(mask).to_pylist()}


_POOLS: list[pa.MemoryPool] = []  # kept alive: a buffer allocated through a proxy pool frees through it


def measure(call: Callable[[], dict[str, Image.Image]]) -> tuple[dict[str, Any], dict[str, Image.Image]]:
    pool, previous = pa.proxy_memory_pool(pa.default_memory_pool()), pa.default_memory_pool()
    _POOLS.append(pool)
    pa.set_memory_pool(pool)
    try:
        start = time.perf_counter()
        out = call()
        seconds = time.perf_counter() - start
    finally:
        pa.set_memory_pool(previous)
    return {"seconds": round(seconds, 4), "peak_arrow_mb": round(pool.max_memory() / 2**20, 1)}, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--image-kb", type=int, default=8)
    parser.add_argument("--keys", type=int, default=3)
    args = parser.parse_args()
    wanted = sorted({0, *(int(i) for i in np.linspace(0, args.rows - 1, args.keys)[1:])})
    filler = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        shard = Path(tmp) / "00000.parquet"
        rows = [{"key": f"{i:09d}", "image": _png(i) if i in wanted else filler.bytes(args.image_kb * 1024),
                 "status": "success"} for i in range(args.rows)]
        write_shard(pa.Table.from_pylist(rows), shard)
        del rows
        keys = [f"{i:09d}" for i in wanted]
        first = {"naive": measure(lambda: naive(shard, keys[:1]))[0]}
        shards = ImageShards(Path(tmp))
        shards.available()
        first["images"], got = measure(lambda: shards.images(keys[:1]))
        spread = {"naive": measure(lambda: naive(shard, keys))[0]}
        spread["images"], got_all = measure(lambda: shards.images(keys))
        expected = naive(shard, keys)
        assert all(np.array_equal(np.asarray(got_all[k]), np.asarray(expected[k])) for k in keys)
        column_mb = round(pq.ParquetFile(shard).metadata.row_group(0).column(1).total_compressed_size / 2**20, 1)
    print(json.dumps({"rows": args.rows, "image_kb": args.image_kb, "image_column_mb": column_mb,
                      "first_key": first, "spread_keys": {"rows": wanted, **spread},
                      "peak_ratio_first_key": round(first["naive"]["peak_arrow_mb"]
                                                    / max(first["images"]["peak_arrow_mb"], 0.1), 1)}, indent=1))


if __name__ == "__main__":
    main()
