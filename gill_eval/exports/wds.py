"""``gill-eval export webdataset DIR``: reference images or generated images as webdataset tar shards.

Each sample is ``<key>.<jpg|png>`` (the stored bytes, unchanged), ``<key>.txt`` (the caption of a
prepared dataset's image, or a generated image's prompt) and ``<key>.json`` (key, status and, for generated
images, benchmark, context, model, seed, prompt and the per-image scores); shards are ``DIR/<name>-NNNNN.tar`` of at most ``SAMPLES_PER_SHARD``
samples, each written atomically, read back by ``webdataset.WebDataset``. Rows without an image (failed
downloads or generations) are counted, not written: webdataset consumers expect an image per sample.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gill_eval.store import atomic_path

SAMPLES_PER_SHARD = 1000


def _key(text: str) -> str:
    """A webdataset key: no dots (the library splits a member's name at the first dot of its base name)."""
    return text.replace(".", "_")


def write_shards(samples: Iterator[dict[str, Any]], out: Path, name: str) -> list[Path]:
    """Stream ``samples`` (webdataset dicts) into ``out/<name>-NNNNN.tar``; stale shards of ``name`` removed."""
    import webdataset as wds

    sample = next(samples, None)
    written: list[Path] = []
    while sample is not None:
        path = out / f"{name}-{len(written):05d}.tar"
        with atomic_path(path) as tmp, wds.TarWriter(str(tmp)) as sink:
            count = 0
            while sample is not None and count < SAMPLES_PER_SHARD:
                sink.write(sample)
                count += 1
                sample = next(samples, None)
        written.append(path)
    for stale in out.glob(f"{name}-*.tar"):
        if stale not in written:
            stale.unlink()
    return written


def export_webdataset(out: Path, dataset: str | None = None, results: list[dict[str, Any]] | None = None,
                      benchmarks: list[str] | None = None) -> dict[str, Any]:
    """Write the shards of a prepared ``dataset`` (references) or of the generated images in ``results``."""
    from gill_eval.exports.gill_layout import image_file_name
    from gill_eval.exports.images import generated_records
    from gill_eval.exports.prepared import prepared_records

    counts = {"samples": 0, "without_image": 0}

    def prepared() -> Iterator[dict[str, Any]]:
        rows, _ = prepared_records(dataset or "")
        for row in rows:
            if row["image"] is None:
                counts["without_image"] += 1
                continue
            counts["samples"] += 1
            ext = image_file_name(row["key"], row["image"]).rpartition(".")[2]
            meta = {"key": row["key"], "dataset": dataset, "status": row["status"]}
            yield {"__key__": _key(row["key"]), ext: row["image"], "txt": row["caption"], "json": json.dumps(meta)}

    def generated() -> Iterator[dict[str, Any]]:
        for stem, record, png in generated_records(results or [], benchmarks):
            if png is None:
                counts["without_image"] += 1
                continue
            counts["samples"] += 1
            prompt = {"txt": record["prompt"]} if record["prompt"] is not None else {}
            yield {"__key__": _key(stem.as_posix()), "png": png, **prompt, "json": json.dumps(record, default=str)}

    name = dataset if dataset is not None else "generated"
    shards = write_shards(prepared() if dataset is not None else generated(), out, name)
    return {"folder": str(out), "shards": len(shards), **counts}
