"""`gill-eval prepare vist`: VIST story-in-sequence JSON into one row per story, photos via img2dataset.

Format facts (docs/protocols.md, VIST): ``annotations`` is a list of one-element lists; every id is a
string and ``worker_arranged_photo_order`` the only integer; rows are grouped by ``story_id`` in file
order, as GILL and FROMAGe do. A story that is not exactly 5 rows long or whose order field is not
0..4 in file order is not an example: it is counted in the manifest and listed in
``rejected_stories.json``, never dropped silently. Photos are keyed by Flickr photo id and downloaded
from ``url_o``; photos without ``url_o`` are counted. Examples are keyed by story id (the same photo
ends several stories, so results must never be keyed by photo).

With ``--from DIR`` the photos come from an existing copy (``from_copy``: img2dataset output of the url_o
links, webdataset shards, a Hugging Face folder with image and url columns), joined to the referenced photos
by ``url_o`` (by photo id for a copy without URLs) and stored as a download stores them (GILL's 224 PNG).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from gill_eval.datasets.archive import read_tar_member
from gill_eval.datasets.download import DownloadOptions, download_images, retry_failed, retry_history
from gill_eval.datasets.from_copy import Records, import_images, open_copy
from gill_eval.datasets.output import PreparedDataset, coverage, image_statuses
from gill_eval.datasets.sources import load_json, resolve_source
from gill_eval.errors import ConfigError, InputError
from gill_eval.schema import VIST_SIS, image_url, validate
from gill_eval.store import Manifest, atomic_write_json, data_root

SPLITS = ("train", "val", "test")
STORY_LENGTH = 5
DEFAULT_STORE = "gill-224"
"""Each url_o original is stored as GILL stores it (evals/download_vist_images.py): squashed to 224x224 with
Pillow's default filter, RGB, PNG. References, context images and retrieval candidates then carry the
official pixels, with no lossy step in between (docs/protocols.md)."""


def dataset_name(split: str) -> str:
    """``vist`` for the evaluation split (val, what the benchmarks read), ``vist-train``/``vist-test`` otherwise."""
    if split not in SPLITS:
        raise ConfigError(f"--split {split!r}: choose one of {', '.join(SPLITS)}")
    return "vist" if split == "val" else f"vist-{split}"


@dataclass
class SisFile:
    """What the SIS file says: accepted stories, rejected ones with reasons, and each photo's url_o."""

    stories: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    photo_urls: dict[str, str | None] = field(default_factory=dict)
    referenced: list[str] = field(default_factory=list)


def parse_sis(path: Path, data: Any, allow_local_urls: bool = False) -> SisFile:
    """Check (``schema.VIST_SIS``, the URL rule) and group the SIS JSON (already loaded)."""
    validate(VIST_SIS, data, path)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (row,) in data["annotations"]:
        groups[row["story_id"]].append(row)
    parsed = SisFile()
    for i, image in enumerate(data["images"]):
        url = image.get("url_o") or None
        where = f"{path}: images[{i}] (id {image['id']!r}): key 'url_o'"
        parsed.photo_urls[image["id"]] = url and image_url(url, where, path.parent, allow_local_urls)
    seen: set[str] = set()
    for story_id, rows in groups.items():  # dicts keep first-appearance (file) order
        for row in rows:
            if row["photo_flickr_id"] not in seen:
                seen.add(row["photo_flickr_id"])
                parsed.referenced.append(row["photo_flickr_id"])
        order = [r["worker_arranged_photo_order"] for r in rows]
        reason = None
        if len(rows) != STORY_LENGTH:
            reason = f"has {len(rows)} rows, expected {STORY_LENGTH}"
        elif order != list(range(STORY_LENGTH)):
            reason = f"order field in file order is {order}, expected [0, 1, 2, 3, 4]"
        elif len({r["album_id"] for r in rows}) != 1:
            reason = "rows come from more than one album"
        if reason is not None:
            parsed.rejected.append({"story_id": story_id, "reason": reason})
            continue
        parsed.stories.append({
            "key": story_id,
            "story_id": story_id,
            "album_id": rows[0]["album_id"],
            "photo_ids": [r["photo_flickr_id"] for r in rows],
            "texts": [r["text"] for r in rows],
            "original_texts": [r["original_text"] for r in rows],
        })
    return parsed


EXAMPLE_SCHEMA = pa.schema([
    ("key", pa.string()), ("story_id", pa.string()), ("album_id", pa.string()),
    ("photo_ids", pa.list_(pa.string())), ("texts", pa.list_(pa.string())),
    ("original_texts", pa.list_(pa.string())),
])


def load_sis(path: Path, split: str) -> Any:
    """The SIS JSON from the file itself or from the released ``SIS-with-labels.tar.gz`` (not extracted)."""
    if path.name.endswith((".tar.gz", ".tgz", ".tar")):
        member = f"sis/{split}.story-in-sequence.json"
        return load_json(path / member, read_tar_member(path, member))
    return load_json(path)


def story_coverage(stories: list[dict[str, Any]], status: dict[str, str]) -> dict[str, int]:
    """Stories with all 5 photos usable, with the first 4 only (target missing), with context missing."""
    counts = {"all_5_images": 0, "first_4_only": 0, "context_image_missing": 0}
    for story in stories:
        ok = [status.get(p) == "success" for p in story["photo_ids"]]
        if all(ok):
            counts["all_5_images"] += 1
        elif all(ok[:-1]):
            counts["first_4_only"] += 1
        else:
            counts["context_image_missing"] += 1
    return counts


def prepare_vist(
    sis: str, split: str, options: DownloadOptions, retry: bool = False, overwrite: bool = False,
    allow_local_urls: bool = False, copy: str | None = None, copy_format: str | None = None,
) -> dict[str, Any]:
    """Parse the SIS file, write one row per story, download the referenced photos, record coverage.

    ``url_o`` must be http(s) unless ``allow_local_urls`` (then file:// and local paths, relative to the
    SIS file's folder, are read too; docs/reliability.md). With ``copy`` (``--from DIR``) the photos are
    imported from an existing copy instead (``from_copy``), which is recorded among the manifest's sources.
    """
    name = dataset_name(split)
    options = options.with_default_store(DEFAULT_STORE)
    source = resolve_source(sis, data_root() / "sources" / "vist")
    parsed = parse_sis(source.path, load_sis(source.path, split), allow_local_urls)
    if not parsed.stories:
        raise InputError(f"{source.path}: no complete 5-photo story ({len(parsed.rejected)} rejected)")
    if copy is not None and retry:
        raise ConfigError("--retry-failed downloads again; it does not combine with --from")
    found = open_copy(copy, copy_format, split) if copy is not None else None
    sources = {"sis": source.sha256, **({"from": found.fingerprint()} if found else {})}
    prepared = PreparedDataset.open(name, {"sources": sources, "options": options.content()}, overwrite)
    atomic_write_json(prepared.dir / "rejected_stories.json", parsed.rejected)
    prepared.write_examples(pa.Table.from_pylist(parsed.stories, schema=EXAMPLE_SCHEMA), 10_000)
    with_url = sorted(p for p in parsed.referenced if parsed.photo_urls.get(p))
    urls = pa.table({"key": pa.array(with_url, pa.string()),
                     "url": pa.array([parsed.photo_urls[p] for p in with_url], pa.string())})
    imported = None
    if found is not None:
        records = urls.append_column("caption", pa.nulls(urls.num_rows, pa.string()))  # photos have no caption
        imported = import_images(found, Records(records, name="sis", keys_are_rows=False), prepared.work_dir,
                                 prepared.images_dir, options)
    else:
        download_images(urls, prepared.work_dir, prepared.images_dir, options)
    if retry:
        retry_failed(prepared.work_dir, prepared.images_dir, options)
    images = coverage(prepared.images_dir, len(with_url))
    status = dict(image_statuses(prepared.images_dir))
    counts = {
        "examples": len(parsed.stories),
        "stories_rejected": len(parsed.rejected),
        "stories": story_coverage(parsed.stories, status),
        "photos_referenced": len(parsed.referenced),
        "photos_without_url_o": len(parsed.referenced) - len(with_url),
        "images": images,
        "retries": retry_history(prepared.work_dir),
    }
    if imported is not None:
        counts["imported"] = imported["counts"]
    manifest = Manifest(dataset=name, options={"split": split, **options.record()}, counts=counts)
    manifest.sources.append(source.record())
    if found is not None:
        manifest.sources.append(found.record())
    prepared.finish(manifest)
    details = {"stories": counts["stories"], "stories rejected": len(parsed.rejected),
               "photos without url_o": counts["photos_without_url_o"]}
    if parsed.rejected:
        details["first rejected"] = parsed.rejected[:3]
    return {"dataset": name, "dir": str(prepared.dir), **counts, "rejected": parsed.rejected, "details": details,
            **({"rejected_rows": imported["rejected_rows"]} if imported else {})}
