"""Reading a prepared dataset for export: each example with its image, streamed in key order."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gill_eval.errors import InputError
from gill_eval.store import Manifest, dataset_dir, iter_batches, read_manifest, verify_manifest


def paired_rows(folder: Path) -> Iterator[tuple[str, str, bytes | None, str]]:
    """(key, caption, image bytes, status), walking examples and images together (both sorted by key)."""
    examples = iter_batches(folder / "examples", columns=["key", "caption"])
    images = iter_batches(folder / "images", columns=["key", "image", "status"])
    pending: list[tuple[str, bytes | None, str]] = []
    for batch in examples:
        for key, caption in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
            if not pending:
                nxt = next(images, None)
                if nxt is None:
                    raise InputError(f"{folder}/images: fewer image rows than examples; this export needs one image "
                                     "per example (the cc3m-* datasets), or rerun that dataset's `gill-eval prepare`")
                pending = list(zip(*(c.to_pylist() for c in nxt.columns)))[::-1]
            image_key, image, status = pending.pop()
            if image_key != key:
                raise InputError(f"{folder}: example {key} and image {image_key} out of step; this export needs one "
                                 "image per example (the cc3m-* datasets), or rerun prepare with --overwrite")
            yield key, caption, image, status


def prepared_source(name: str) -> tuple[Path, Manifest]:
    """The folder and verified manifest of the prepared dataset ``name``."""
    folder = dataset_dir(name)
    manifest = read_manifest(folder)
    verify_manifest(folder, manifest, f"rerun the `gill-eval prepare` command that made {name} to repair it")
    return folder, manifest


def provenance(name: str, manifest: Manifest) -> dict[str, Any]:
    """What an export's card records about the prepared dataset it came from."""
    return {"dataset": name, "content_hash": manifest.content_hash(), "sources": manifest.sources,
            "options": manifest.options, "counts": manifest.counts, "gill_eval_version": manifest.gill_eval_version,
            "prepared": manifest.created}


def prepared_records(name: str) -> tuple[Iterator[dict[str, Any]], dict[str, Any]]:
    """(rows ``key, caption, status, image`` streamed in key order, provenance) of a prepared dataset."""
    folder, manifest = prepared_source(name)
    rows = ({"key": key, "caption": caption, "status": status, "image": image if status == "success" else None}
            for key, caption, image, status in paired_rows(folder))
    return rows, provenance(name, manifest)
