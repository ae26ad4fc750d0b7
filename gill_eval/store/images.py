"""Image bytes in the store: decoding with a size guard, lossless PNG encoding, and key lookups in image shards.

An image shard folder (``datasets/<name>/images``) holds rows ``key, image, status``. ``ImageShards`` reads
only the ``key``/``status`` columns to map keys to shards, then fetches the bytes of the requested keys with
a Parquet filter, so memory stays proportional to what is asked for. It sits below ``models`` so that GILL's
retrieval index can show the images it retrieves (docs/architecture.md); benchmarks read prepared datasets
through it as well (``gill_eval.bench.data``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
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


class ImageShards:
    """Key -> decoded image over a folder of image shards; only rows whose status is 'success' count."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._index: dict[str, Path] | None = None

    def _image_index(self) -> dict[str, Path]:
        """Key -> shard path for images whose status is 'success' (only key/status columns are read)."""
        if self._index is None:
            index: dict[str, Path] = {}
            for shard in list_shards(self.folder):
                for batch in iter_batches([shard], columns=["key", "status"]):
                    for key, status in zip(batch.column("key").to_pylist(), batch.column("status").to_pylist(), strict=True):
                        if status == "success":
                            index[str(key)] = shard
            self._index = index
        return self._index

    def available(self) -> set[str]:
        """Keys of the images that downloaded and are stored."""
        return set(self._image_index())

    def images(self, keys: Iterable[str]) -> dict[str, Image.Image]:
        """Decoded RGB images for ``keys`` (each must be available)."""
        index = self._image_index()
        wanted = sorted(set(keys))
        missing = [k for k in wanted if k not in index]
        if missing:
            raise InputError(f"{self.folder}: no successful image for key(s) {', '.join(missing[:5])}")
        by_shard: dict[Path, list[str]] = {}
        for key in wanted:
            by_shard.setdefault(index[key], []).append(key)
        out: dict[str, Image.Image] = {}
        for shard, shard_keys in by_shard.items():
            table = pq.read_table(shard, columns=["key", "image", "status"])
            mask = pc.and_(pc.is_in(table["key"].cast(pa.string()), pa.array(shard_keys)), pc.equal(table["status"], "success"))
            for row in table.filter(mask).to_pylist():
                out[str(row["key"])] = decode_image(row["image"], f"{shard} key {row['key']}")
        return out
