"""`gill-eval prepare coco --year 2017`: the MS-COCO 2017 val captioning split (Table 7).

Input: ``captions_val2017.json`` (``images``: ``id``, ``file_name`` "000000397133.jpg"; ``annotations``:
``id``, ``image_id``, ``caption``) and ``val2017.zip`` or its folder. Output ``datasets/coco2017/``: one
example row per image with all of its reference captions (sorted by caption id, surrounding whitespace
stripped), and every image of the file as image shards (stored bytes unchanged), with the usual coverage.
Instead of the zip, ``--from`` reads a Hugging Face ``datasets`` copy joined by image id (``coco_copy``).
The 2014 file (names "COCO_val2014_...") is refused with a one-line error naming the right file.

Schema checks of the input file go through ``sources.require`` (one line naming file, entry and key); a
JSON-schema module can replace ``parse_caption_file``'s checks without changing its output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from gill_eval.datasets.coco import parse_captions
from gill_eval.datasets.coco_copy import open_coco_images
from gill_eval.datasets.local_images import write_local_image_shards
from gill_eval.datasets.output import PreparedDataset, coverage
from gill_eval.datasets.sources import load_json, resolve_source
from gill_eval.errors import InputError
from gill_eval.store import Manifest, data_root

NAME = "coco2017"
EXAMPLE_SCHEMA = pa.schema([
    ("key", pa.string()), ("image_id", pa.int64()), ("file_name", pa.string()), ("captions", pa.list_(pa.string())),
])


def parse_caption_file(path: Path, data: Any) -> tuple[list[tuple[int, str]], dict[int, list[str]]]:
    """(image id, file name) sorted by id, and image id -> its captions in caption-id order."""
    images, captions = parse_captions(path, data)
    for image_id, file_name in images:
        if file_name.startswith("COCO_"):
            raise InputError(f"{path}: image {image_id} is named {file_name!r}, a 2014 file name; --year 2017 needs "
                             "annotations/captions_val2017.json (or use --year 2014)")
    by_image: dict[int, list[str]] = {image_id: [] for image_id, _ in images}
    for _, image_id, caption in captions:
        by_image[image_id].append(caption)
    empty = [image_id for image_id, refs in by_image.items() if not refs]
    if empty:
        raise InputError(f"{path}: image {empty[0]} has no caption (every image needs its references)")
    return images, by_image


def prepare_coco2017(captions_path: str, images: str | None = None, shard_size: int = 1000, overwrite: bool = False,
                     copy: str | None = None, copy_format: str | None = None) -> dict[str, Any]:
    """Write one example per val2017 image (with its reference captions) and every image as image shards.

    The images come from ``images`` (the zip or its folder) or from the Hugging Face copy ``copy``: exactly one.
    """
    source = resolve_source(captions_path, data_root() / "sources" / NAME)
    image_list, by_image = parse_caption_file(source.path, load_json(source.path))
    with open_coco_images(images, copy, copy_format, image_list) as found:
        fingerprint = {"sources": {"captions": source.sha256, "images": found.identity},
                       "options": {"shard_size": shard_size}}
        prepared = PreparedDataset.open(NAME, fingerprint, overwrite)
        table = pa.table({
            "key": [str(i) for i, _ in image_list], "image_id": [i for i, _ in image_list],
            "file_name": [f for _, f in image_list], "captions": [by_image[i] for i, _ in image_list],
        }, schema=EXAMPLE_SCHEMA)
        prepared.write_examples(table, 10_000)
        write_local_image_shards([(str(i), f) for i, f in image_list], found.source, prepared.images_dir, shard_size)
        imported = found.finish_import(prepared.work_dir)
    counts = {"examples": len(image_list), "captions": sum(len(v) for v in by_image.values()),
              "images": coverage(prepared.images_dir, len(image_list)),
              **({"imported": imported["imported"]} if imported else {})}
    options = {"year": 2017, "split": "val", "shard_size": shard_size,
               "captions": "every caption of each image, by caption id, stripped"}
    prepared.finish(Manifest(dataset=NAME, options=options, counts=counts, sources=[source.record(), found.record]))
    return {"dataset": NAME, "dir": str(prepared.dir), **counts, **imported}
