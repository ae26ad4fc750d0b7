"""Image bytes in the store: decoding with a size guard, lossless PNG encoding, and key lookups in image shards.

An image shard folder (``datasets/<name>/images``) holds rows ``key, image, status``. ``ImageShards`` reads
only the ``key``/``status`` columns to map each key to its shard and row, then reads the bytes of the
requested rows only: just the row groups that hold them, each streamed up to its last requested row, so
memory stays about one Parquet data page (a pyarrow writer puts up to 1,024 rows in one), not the shard.
It sits below ``models`` so that GILL's retrieval index can show the images it retrieves
(docs/architecture.md); benchmarks read prepared datasets through it as well (``gill_eval.bench.data``).
"""

from __future__ import annotations

import bisect
import contextlib
import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from gill_eval.errors import InputError
from gill_eval.store.shards import iter_batches, list_shards

PIXEL_CAP_ENV = "GILL_EVAL_MAX_IMAGE_PIXELS"
"""Optional cap on decoded pixels (docs/protocols.md, "Environments"). Unset: Pillow's own limit, as the
official scripts had (a warning above 89,478,485 pixels, an error above twice that)."""


def pixel_cap() -> int | None:
    """The ``GILL_EVAL_MAX_IMAGE_PIXELS`` cap, or None when unset."""
    raw = os.environ.get(PIXEL_CAP_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise InputError(f"{PIXEL_CAP_ENV}={raw!r}: expected a positive whole number of pixels, or unset it")
    return int(raw)


def decode_image(data: bytes, where: str) -> Image.Image:
    """Encoded bytes -> RGB image; a clear error naming the key when the bytes are not an image."""
    cap = pixel_cap()
    try:
        with Image.open(io.BytesIO(data)) as im:
            if cap is not None and im.width * im.height > cap:
                raise InputError(f"{where}: {im.width}x{im.height} exceeds {PIXEL_CAP_ENV}={cap} pixels")
            return im.convert("RGB")
    except (OSError, Image.DecompressionBombError) as exc:
        raise InputError(f"{where}: not a decodable image ({exc})") from exc


def encode_png(image: Image.Image) -> bytes:
    """Lossless PNG bytes (generated images are stored exactly as the model produced them)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


#: A key's place in the index: its shard's number shifted left by ``_ROW_BITS``, or'ed with its row in the shard.
_ROW_BITS = 40
#: Rows per read batch and bytes of the read buffer when fetching image bytes (bounds the memory of a read).
_READ_BATCH = 16
_READ_BUFFER = 1 << 20


def _image_rows(shard: Path, rows: dict[int, str]) -> Iterator[tuple[str, bytes]]:
    """``(key, image bytes)`` of the given rows of ``shard`` (row in the shard -> the key indexed there).

    Only the row groups holding those rows are read, each streamed (no pre-buffering) in batches of
    ``_READ_BATCH`` rows and left after its last wanted row: the image column is never materialised, only
    the data pages up to that row pass through memory, one at a time."""
    try:
        parquet = pq.ParquetFile(shard, buffer_size=_READ_BUFFER, pre_buffer=False)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{shard}: not a readable Parquet shard ({exc})") from exc
    with contextlib.closing(parquet):
        meta = parquet.metadata
        starts = [0]
        for group in range(meta.num_row_groups):
            starts.append(starts[-1] + meta.row_group(group).num_rows)
        by_group: dict[int, list[int]] = {}
        for row in sorted(rows):
            by_group.setdefault(bisect.bisect_right(starts, row) - 1, []).append(row)
        for group, wanted in by_group.items():
            position, pending = starts[group], iter(wanted)
            row = next(pending, None)
            for batch in parquet.iter_batches(batch_size=_READ_BATCH, row_groups=[group], columns=["key", "image"]):
                end = position + batch.num_rows
                while row is not None and row < end:
                    key = str(batch.column("key")[row - position].as_py())
                    if key != rows[row]:
                        raise InputError(f"{shard}: row {row} holds key {key!r}, not {rows[row]!r}; the shard "
                                         "changed after it was indexed (reopen the dataset)")
                    yield key, batch.column("image")[row - position].as_py()
                    row = next(pending, None)
                if row is None:
                    break
                position = end


class ImageShards:
    """Key -> decoded image over a folder of image shards; only rows whose status is 'success' count."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._shards: list[Path] = []
        self._index: dict[str, int] | None = None

    def _image_index(self) -> dict[str, int]:
        """Key -> place (shard number and row, ``_ROW_BITS``) of the images whose status is 'success'; only
        the key/status columns are read. A key stored twice resolves to its last successful row."""
        if self._index is None:
            shards = list_shards(self.folder)
            index: dict[str, int] = {}
            for number, shard in enumerate(shards):
                row = number << _ROW_BITS
                for batch in iter_batches([shard], columns=["key", "status"]):
                    for key, status in zip(batch.column("key").to_pylist(), batch.column("status").to_pylist(), strict=True):
                        if status == "success":
                            index[str(key)] = row
                        row += 1
            self._shards, self._index = shards, index
        return self._index

    def available(self) -> set[str]:
        """Keys of the images that downloaded and are stored."""
        return set(self._image_index())

    def images(self, keys: Iterable[str]) -> dict[str, Image.Image]:
        """Decoded RGB images for ``keys`` (each must be available); reads only the requested rows' bytes."""
        index = self._image_index()
        wanted = sorted(set(keys))
        missing = [k for k in wanted if k not in index]
        if missing:
            raise InputError(f"{self.folder}: no successful image for key(s) {', '.join(missing[:5])}")
        by_shard: dict[int, dict[int, str]] = {}
        for key in wanted:
            place = index[key]
            by_shard.setdefault(place >> _ROW_BITS, {})[place & ((1 << _ROW_BITS) - 1)] = key
        out: dict[str, Image.Image] = {}
        for number, rows in by_shard.items():
            shard = self._shards[number]
            for key, data in _image_rows(shard, rows):
                out[key] = decode_image(data, f"{shard} key {key}")
        return out
