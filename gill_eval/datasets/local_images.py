"""Image shards from local files (a zip or a folder): VisDial and COCO ship their images that way.

The bytes are stored as they are (no re-encoding, so FID references stay the published files), after a
full decode check with the pixel limit. A missing or broken file becomes a row with its reason, never a
silent gap. Each shard is a unit of work, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa

from gill_eval.console import make_progress
from gill_eval.datasets.archive import ImageSource, MemberCorrupt, MemberTooLarge, check_image
from gill_eval.datasets.output import IMAGE_SCHEMA
from gill_eval.store import UnitOfWork, WorkPlan, write_shard
from gill_eval.store.shards import shard_name


def _row(key: str, file_name: str, source: ImageSource) -> dict[str, object]:
    row: dict[str, object] = {"key": key, "image": None, "error_message": None, "width": None, "height": None,
                              "original_width": None, "original_height": None, "sha256": None, "url": None}
    if file_name not in source:
        return {**row, "status": "missing_file", "error_message": f"{file_name} not in {source.path}"}
    try:
        data = source.read(file_name)
    except MemberTooLarge as exc:
        return {**row, "status": "too_large", "error_message": str(exc)}
    except MemberCorrupt as exc:
        return {**row, "status": "corrupt_member", "error_message": str(exc)}
    decoded = check_image(data)
    row.update(status=decoded.status, error_message=decoded.error_message, sha256=hashlib.sha256(data).hexdigest())
    if decoded.status == "success":
        row.update(image=data, width=decoded.width, height=decoded.height,
                   original_width=decoded.width, original_height=decoded.height)
    return row


def write_local_image_shards(items: list[tuple[str, str]], source: ImageSource, images_dir: Path, shard_size: int) -> None:
    """Write ``(key, file base name)`` items as image shards of ``shard_size`` rows, in the given order."""
    count = -(-len(items) // shard_size)
    plan = WorkPlan(images_dir, [UnitOfWork(f"{i:05d}", i) for i in range(count)])
    pending = plan.pending()
    chunks = {u.uid: items[u.index * shard_size:(u.index + 1) * shard_size] for u in pending}
    with make_progress() as progress:
        task = progress.add_task(f"reading images from {source.path.name}", total=len(items))
        progress.advance(task, len(items) - sum(len(c) for c in chunks.values()))  # done in an earlier run
        for unit in pending:
            rows = []
            for key, file_name in chunks[unit.uid]:
                rows.append(_row(key, file_name, source))
                progress.advance(task)
            path = write_shard(pa.Table.from_pylist(rows, schema=IMAGE_SCHEMA), images_dir / shard_name(unit.index))
            plan.mark_done(unit, {"rows": len(rows)}, [path])
