"""Reading prepared datasets for benchmarks: example rows and image bytes by key.

The one place that knows the prepared layout (``dataset_dir(NAME)/examples`` and ``/images`` shards, see
the datasets package). Images are fetched per unit of work with a Parquet filter on ``key``, so memory
stays proportional to a unit, not to the dataset (``gill_eval.store.images``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from gill_eval.errors import InputError
from gill_eval.store import dataset_dir, iter_batches, list_shards, read_manifest, verify_manifest
from gill_eval.store.images import ImageShards, decode_image, encode_png

__all__ = ["PreparedDataset", "decode_image", "encode_png"]  # the image helpers live in the store


class PreparedDataset:
    """A prepared dataset folder: its manifest hash, example rows and a key -> image lookup."""

    def __init__(self, name: str, folder: Path | None = None) -> None:
        self.name = name
        self.folder = folder or dataset_dir(name)
        self.manifest = read_manifest(self.folder)
        verify_manifest(self.folder, self.manifest, f"rerun the `gill-eval prepare` command that made {name} to repair it")
        self._images = ImageShards(self.folder / "images")

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

    def available(self) -> set[str]:
        """Keys of the images that downloaded and are stored."""
        return self._images.available()

    def images(self, keys: Iterable[str]) -> dict[str, Image.Image]:
        """Decoded RGB images for ``keys`` (each must be available)."""
        return self._images.images(keys)
