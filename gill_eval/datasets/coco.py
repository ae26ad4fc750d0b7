"""`gill-eval prepare coco`: a seeded, frozen caption manifest and the full val2014 reference images.

The COCO-30k protocol is under-specified in the literature (docs/protocols.md, COCO FID), so gill-eval states
its choice and saves it: captions are drawn uniformly without replacement from all val2014 captions by
``SAMPLING_RULE``; the reference set is every image of the captions file (the full val2014 set), not
only the images of the drawn captions. The drawn manifest's sha256 (over a canonical JSON-lines form)
goes into the dataset manifest so that results can name exactly which prompts they used.

The images come from ``--images`` (val2014.zip or its folder) or, with ``--from``, from a Hugging Face
``datasets`` copy joined to the captions file by image id (``coco_copy``); both write the same image shards.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa

from gill_eval.datasets.coco_copy import open_coco_images
from gill_eval.datasets.local_images import write_local_image_shards
from gill_eval.datasets.output import PreparedDataset, coverage
from gill_eval.datasets.sources import load_json, resolve_source
from gill_eval.errors import ConfigError, InputError
from gill_eval.schema import COCO_CAPTIONS, validate
from gill_eval.store import Manifest, data_root

NAME = "coco"
SAMPLING_RULE = (
    "sort all captions by caption id; u = numpy.random.default_rng(seed).random(n_captions); keep the "
    "num_captions captions with the smallest u (ties by caption id); caption text stripped of surrounding "
    "whitespace; manifest rows sorted by caption id"
)

EXAMPLE_SCHEMA = pa.schema([
    ("key", pa.string()), ("caption_id", pa.int64()), ("image_id", pa.int64()), ("caption", pa.string()),
])


def parse_captions(path: Path, data: Any) -> tuple[list[tuple[int, str]], list[tuple[int, int, str]]]:
    """(image id, file base name) sorted by id, and (caption id, image id, caption) sorted by caption id.

    The file is checked against ``schema.COCO_CAPTIONS`` first; what remains are duplicates and dangling ids.
    """
    validate(COCO_CAPTIONS, data, path)
    images: dict[int, str] = {}
    for i, entry in enumerate(data["images"]):
        where = f"{path}: images[{i}]"
        image_id = entry["id"]
        if image_id in images:
            raise InputError(f"{where}: duplicate image id {image_id}")
        images[image_id] = PurePosixPath(entry["file_name"]).name
    captions: dict[int, tuple[int, int, str]] = {}
    for i, entry in enumerate(data["annotations"]):
        where = f"{path}: annotations[{i}]"
        caption_id, image_id = entry["id"], entry["image_id"]
        if caption_id in captions:
            raise InputError(f"{where}: duplicate caption id {caption_id}")
        if image_id not in images:
            raise InputError(f"{where}: image_id {image_id} is not in the file's images list")
        captions[caption_id] = (caption_id, image_id, entry["caption"].strip())
    return sorted(images.items()), [captions[k] for k in sorted(captions)]


def sample_captions(captions: list[tuple[int, int, str]], num: int, seed: int, path: Path) -> list[tuple[int, int, str]]:
    """Apply ``SAMPLING_RULE`` to captions already sorted by caption id."""
    if num < 1:
        raise ConfigError("--num-captions must be at least 1")
    if num > len(captions):
        raise ConfigError(f"--num-captions {num} exceeds the {len(captions)} captions in {path}")
    u = np.random.default_rng(seed).random(len(captions))
    chosen = np.sort(np.argsort(u, kind="stable")[:num])
    return [captions[i] for i in chosen]


def manifest_sha256(rows: list[tuple[int, int, str]]) -> str:
    """sha256 of the caption manifest as JSON lines ``[caption_id, image_id, caption]`` (UTF-8, LF)."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update((json.dumps(list(row), ensure_ascii=False) + "\n").encode("utf-8"))
    return digest.hexdigest()


def prepare_coco(
    captions_path: str, images: str | None = None, num_captions: int = 30_000, seed: int = 0, shard_size: int = 1000,
    overwrite: bool = False, copy: str | None = None, copy_format: str | None = None,
) -> dict[str, Any]:
    """Write the seeded caption manifest as examples and every val2014 image as image shards.

    The images come from ``images`` (the zip or its folder) or from the Hugging Face copy ``copy``: exactly one.
    """
    source = resolve_source(captions_path, data_root() / "sources" / "coco")
    image_list, captions = parse_captions(source.path, load_json(source.path))
    drawn = sample_captions(captions, num_captions, seed, source.path)
    digest = manifest_sha256(drawn)
    with open_coco_images(images, copy, copy_format, image_list) as found:
        fingerprint = {
            "sources": {"captions": source.sha256, "images": found.identity},
            "options": {"num_captions": num_captions, "seed": seed, "shard_size": shard_size},
        }
        prepared = PreparedDataset.open(NAME, fingerprint, overwrite)
        table = pa.table({
            "key": pa.array([str(c[0]) for c in drawn], pa.string()),
            "caption_id": pa.array([c[0] for c in drawn], pa.int64()),
            "image_id": pa.array([c[1] for c in drawn], pa.int64()),
            "caption": pa.array([c[2] for c in drawn], pa.string()),
        }, schema=EXAMPLE_SCHEMA)
        prepared.write_examples(table, 10_000)
        write_local_image_shards([(str(i), f) for i, f in image_list], found.source, prepared.images_dir, shard_size)
        imported = found.finish_import(prepared.work_dir)
    counts = {
        "examples": len(drawn),
        "captions_available": len(captions),
        "caption_manifest_sha256": digest,
        "reference_images": coverage(prepared.images_dir, len(image_list)),
        **({"imported": imported["imported"]} if imported else {}),
    }
    options = {"num_captions": num_captions, "seed": seed, "sampling_rule": SAMPLING_RULE,
               "reference_set": "every image of the captions file (full val2014)", "shard_size": shard_size}
    prepared.finish(Manifest(dataset=NAME, options=options, counts=counts, sources=[source.record(), found.record]))
    return {"dataset": NAME, "dir": str(prepared.dir), **counts, **imported}
