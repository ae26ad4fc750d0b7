"""What ``prepare`` stores for each downloaded image: img2dataset's resize, or the exact pixels a protocol needs.

``--store`` choices (docs/protocols.md, "Stored images"):

- ``img2dataset``: img2dataset's own resize (``--resize-mode``, ``--image-size``, cv2, JPEG q95).
- ``gill-224``: the original photo squashed to 224x224 as GILL's ``evals/download_vist_images.py`` does
  (``resizes.squash_224``), stored as PNG: VIST references, context images and retrieval candidates are
  then the official pixels, with no lossy step in between.
- ``center-crop``: the original photo's centred square, LANCZOS to ``--image-size``, PNG
  (``resizes.center_crop_square``); at 256 it is exactly FID's reference input, with no letterbox bars.

For the last two, img2dataset downloads the original bytes untouched (``disable_all_reencoding``) and
each image is decoded with Pillow by ``store_one``, in img2dataset's download workers
(``img2dataset_run``), as the official code decodes it: bytes Pillow cannot open count
as ``decode_error`` (the official scripts skip them too), more pixels than ``MAX_IMAGE_PIXELS`` as
``too_many_pixels``. The original bytes only live in img2dataset's raw shards until they are converted.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
from PIL import Image

from gill_eval.datasets.archive import MAX_IMAGE_PIXELS
from gill_eval.resizes import GILL_INPUT_SIZE, center_crop_square, squash_224

IMG2DATASET = "img2dataset"
STORE_MODES = (IMG2DATASET, "gill-224", "center-crop")
# zlib level 1: the same pixels (PNG is lossless at every level), a third of level 6's encode time for files
# about a quarter larger (docs/protocols.md, "Speed choices that change no number")
PNG_COMPRESS_LEVEL = 1


def _transform(mode: str, size: int) -> Callable[[Image.Image], Image.Image]:
    if mode == "gill-224":
        return squash_224
    if mode == "center-crop":
        return lambda im: center_crop_square(im, size)
    raise ValueError(f"store mode {mode!r} has no Pillow transform")


def stored_size(mode: str, size: int) -> int | None:
    """The side of the square a Pillow store mode writes (None for img2dataset's own resize)."""
    if mode == IMG2DATASET:
        return None
    return GILL_INPUT_SIZE if mode == "gill-224" else size


def store_one(data: bytes, mode: str, size: int) -> tuple[bytes | None, str, str | None, tuple[int, int] | None]:
    """(PNG bytes, status, error message, original size) of one downloaded original under ``mode``."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            if width * height > MAX_IMAGE_PIXELS:
                return None, "too_many_pixels", f"{width}x{height} exceeds {MAX_IMAGE_PIXELS} pixels", (width, height)
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                out = _transform(mode, size)(im)
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the bytes are not a usable image
        return None, "decode_error", f"{type(exc).__name__}: {exc}", None
    buf = io.BytesIO()
    out.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue(), "success", None, (width, height)


def store_images(table: pa.Table, mode: str, size: int, workers: int = 1) -> pa.Table:
    """Replace the original bytes of every 'success' row of an ``images/`` table by what ``mode`` stores.

    ``workers`` threads share the rows (Pillow releases the GIL while it decodes, resizes and encodes);
    each row's result depends on its bytes only, so the table is the same for any number of workers."""
    if mode == IMG2DATASET:
        return table
    columns = {name: table.column(name).to_pylist() for name in
               ("image", "status", "error_message", "width", "height", "original_width", "original_height")}
    todo = [i for i, (data, status) in enumerate(zip(columns["image"], columns["status"]))
            if status == "success" and data is not None]
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="gill-eval-store") as pool:
        stored = pool.map(lambda i: store_one(columns["image"][i], mode, size), todo)
        results = list(zip(todo, stored))
    for i, (image, new_status, message, original) in results:
        columns["image"][i], columns["status"][i], columns["error_message"][i] = image, new_status, message
        side = None if image is None else stored_size(mode, size)
        columns["width"][i], columns["height"][i] = side, side
        columns["original_width"][i], columns["original_height"][i] = original or (None, None)
    for name, values in columns.items():
        index = table.schema.get_field_index(name)
        table = table.set_column(index, table.schema.field(name), pa.array(values, table.schema.field(name).type))
    return table
