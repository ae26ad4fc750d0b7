"""Reading prepared datasets for benchmarks: example rows and image bytes by key.

The one place that knows the prepared layout (``dataset_dir(NAME)/examples`` and ``/images`` shards, see
the datasets package). Images are fetched per unit of work with a Parquet filter on ``key``, so memory
stays proportional to a unit, not to the dataset.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from gill_eval.errors import InputError
from gill_eval.store import dataset_dir, iter_batches, list_shards, read_manifest, verify_manifest

Image.MAX_IMAGE_PIXELS = 64_000_000  # decompression-bomb guard (PIL raises above 2x this)


def decode_image(data: bytes, where: str) -> Image.Image:
    """Encoded bytes -> RGB image; a clear error naming the key when the bytes are not an image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")
    except (OSError, Image.DecompressionBombError) as exc:
        raise InputError(f"{where}: not a decodable image ({exc})") from exc


def encode_png(image: Image.Image) -> bytes:
    """Lossless PNG bytes (generated images are stored exactly as the model produced them)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


class PreparedDataset:
    """A prepared dataset folder: its manifest hash, example rows and a key -> image lookup."""

    def __init__(self, name: str, folder: Path | None = None) -> None:
        self.name = name
        self.folder = folder or dataset_dir(name)
        self.manifest = read_manifest(self.folder)
        verify_manifest(self.folder, self.manifest, f"rerun the `gill-eval prepare` command that made {name} to repair it")
        self._index: dict[str, Path] | None = None

    @property
    def content_hash(self) -> str:
        """Hash of what determines the prepared content (not the creation time); keys generation folders."""
        m = self.manifest
        key = {"dataset": m.dataset, "options": m.options, "sources": m.sources, "counts": m.counts,
               "schema_version": m.schema_version}
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()

    def examples(self, columns: list[str] | None = None) -> list[dict]:
        """All example rows, in shard order."""
        shards = list_shards(self.folder / "examples")
        if not shards:
            raise InputError(f"{self.folder / 'examples'}: no example shards; run `gill-eval prepare {self.name}`")
        return [row for batch in iter_batches(shards, columns=columns) for row in batch.to_pylist()]

    def _image_index(self) -> dict[str, Path]:
        """Key -> shard path for images whose status is 'success' (only key/status columns are read)."""
        if self._index is None:
            index: dict[str, Path] = {}
            for shard in list_shards(self.folder / "images"):
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
            raise InputError(f"{self.folder / 'images'}: no successful image for key(s) {', '.join(missing[:5])}")
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
