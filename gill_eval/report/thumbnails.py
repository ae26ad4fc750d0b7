"""Image files of the HTML gallery: a JPEG thumbnail sized for the grid and the full-size PNG, each written once.

Generated images are named by where they come from (benchmark, model fingerprint, context, seed,
example), dataset images by a hash of their pixels; a file that exists is never decoded or written
again, so re-rendering a gallery after more results arrive only adds the new images.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image

from gill_eval.bench.data import decode_image, encode_png
from gill_eval.store import atomic_path, atomic_write_bytes

THUMB_SIZE = 192  # px, longest side: two rows of a 1080p screen show every seed of two models
THUMB_QUALITY = 82


class ImageFiles:
    """Writes thumbnails and full-size images under ``root``; paths returned are relative to it (for HTML)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.written = 0

    def _thumb(self, rel: str, image: Image.Image) -> None:
        thumb = image.convert("RGB")
        thumb.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS)
        with atomic_path(self.root / rel) as tmp:
            thumb.save(tmp, format="JPEG", quality=THUMB_QUALITY, optimize=True)
        self.written += 1

    def generated(self, stem: str, png: bytes) -> None:
        """Thumbnail and full-size files of a generated PNG under ``stem`` (e.g. ``gen/vist/<fp>/1c/s0/<id>``)."""
        full, thumb = full_path(stem), thumb_path(stem)
        if not (self.root / full).is_file():
            atomic_write_bytes(self.root / full, png)  # the stored bytes, exactly as generated
        if not (self.root / thumb).is_file():
            self._thumb(thumb, decode_image(png, stem))

    def dataset_image(self, image: Image.Image) -> str:
        """The stem of a dataset image (context, ground truth, candidate), named by a hash of its pixels."""
        rgb = image.convert("RGB")
        digest = hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()[:24]
        stem = f"data/{digest[:2]}/{digest}"
        if not (self.root / full_path(stem)).is_file():
            atomic_write_bytes(self.root / full_path(stem), encode_png(rgb))
        if not (self.root / thumb_path(stem)).is_file():
            self._thumb(thumb_path(stem), rgb)
        return stem


def thumb_path(stem: str) -> str:
    """Where the thumbnail of ``stem`` lives, relative to the site (gallery.js builds the same path)."""
    return f"thumbs/{stem}.jpg"


def full_path(stem: str) -> str:
    """Where the full-size image of ``stem`` lives, relative to the site (gallery.js builds the same path)."""
    return f"full/{stem}.png"

