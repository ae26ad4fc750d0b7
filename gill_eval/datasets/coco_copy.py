"""``prepare coco --from DIR``: COCO's images from a Hugging Face ``datasets`` folder instead of the zip.

The captions file of record (``captions_val2014.json`` or ``captions_val2017.json``) lists every image by id
and file name. A copy is a ``save_to_disk`` folder or a script-free repository of Parquet files (read by
``from_copy.hf_dataset``; split ``validation``/``val``, or its only split) with an image column and an
``image_id``/``cocoid``/``coco_id`` or ``file_name``/``filename`` column. Each copy row joins the image
with its id (its file name's base when it has no id column); with both columns, the file name must be the
captions file's for that id. A row whose id or file name is not in the captions file, whose file name
disagrees, or whose id is not an integer is never joined: it is counted and listed in
``download/import/rejected.parquet``. A second row of an image already joined (datasets with a row per
caption repeat the image) counts as a duplicate; the first is kept.

The joined copy is an ``archive.ImageSource`` addressed by the captions file's file names, so the image
shards are written by the same code as from the zip (``local_images``): the same keys, the same bytes, the
same decode check; an image the copy lacks is ``missing_file``, a row without bytes ``corrupt_member``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa

from gill_eval.datasets.archive import MAX_MEMBER_BYTES, ImageSource, MemberCorrupt, MemberTooLarge, open_image_source
from gill_eval.datasets.from_copy import SourceCopy, hf_column, hf_dataset, hf_image_bytes, hf_image_column, open_copy
from gill_eval.errors import ConfigError, InputError
from gill_eval.store import sha256_file, write_shard

ID_COLUMNS = ("image_id", "cocoid", "coco_id")  # a bare "id" is left out: in a row-per-caption copy it is the caption's
FILE_COLUMNS = ("file_name", "filename")
SCAN_ROWS = 10_000  # id and file name values read per block (never the images)
REJECTED_SCHEMA = pa.schema([("row", pa.int64()), ("image_id", pa.string()), ("file_name", pa.string()),
                             ("reason", pa.string())])


class HfImages(ImageSource):
    """The joined rows of a Hugging Face copy, addressed by the captions file's file names."""

    def __init__(self, folder: Path, ds: Any, image_col: str, rows: dict[str, int]) -> None:
        super().__init__(folder, {name: str(row) for name, row in rows.items()}, None)
        self._images = ds.select_columns([image_col]).with_format("arrow")
        self._image_col = image_col

    def read(self, name: str) -> bytes:
        row = int(self._members[name])
        data = hf_image_bytes(self._images[row:row + 1].column(self._image_col)[0].as_py())
        if data is None:
            raise MemberCorrupt(f"{self.path}: row {row} ({name}) holds no image bytes (only a path, which is not read)")
        if len(data) > MAX_MEMBER_BYTES:
            raise MemberTooLarge(f"{self.path}: row {row} ({name}) is {len(data)} bytes (limit {MAX_MEMBER_BYTES})")
        return data


@dataclass
class CopyJoin:
    """What joining a copy to the captions file found: image file name -> copy row, and the rows refused."""

    rows: dict[str, int] = field(default_factory=dict)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    total: int = 0

    def counts(self) -> dict[str, int]:
        reasons = {"not_in_captions": 0, "file_name_mismatch": 0, "bad_image_id": 0}
        for row in self.rejected:
            reasons[row["reason"]] += 1
        return {"rows": self.total, "joined": len(self.rows), **reasons, "duplicates": self.duplicates}


def _image_id(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text) if text.isdigit() else None


def join_copy(folder: Path, ds: Any, listed: list[tuple[int, str]]) -> CopyJoin:
    """Match every row of ``ds`` to the captions file's images ``(id, file base name)`` (module docstring)."""
    id_col, file_col = hf_column(ds, ID_COLUMNS), hf_column(ds, FILE_COLUMNS)
    if id_col is None and file_col is None:
        raise InputError(f"--from {folder}: no {'/'.join(ID_COLUMNS)} or {'/'.join(FILE_COLUMNS)} column to join to "
                         f"the captions file (columns: {', '.join(ds.column_names)})")
    by_id = dict(listed)
    by_name = {name: image_id for image_id, name in listed}
    table = ds.select_columns([c for c in (id_col, file_col) if c]).with_format("arrow")
    join = CopyJoin(total=len(ds))
    for start in range(0, len(ds), SCAN_ROWS):
        block = table[start:start + SCAN_ROWS]
        ids = block.column(id_col).to_pylist() if id_col else [None] * block.num_rows
        files = block.column(file_col).to_pylist() if file_col else [None] * block.num_rows
        for row, (raw_id, file_name) in enumerate(zip(ids, files), start):
            base = PurePosixPath(str(file_name)).name if file_name is not None else None
            image_id = _image_id(raw_id) if id_col else by_name.get(base or "")
            reason = None
            if id_col and image_id is None:
                reason = "bad_image_id"
            elif image_id not in by_id:
                reason = "not_in_captions"
            elif base is not None and base != by_id[image_id]:
                reason = "file_name_mismatch"
            if reason is not None:
                join.rejected.append({"row": row, "image_id": None if raw_id is None else str(raw_id),
                                      "file_name": None if file_name is None else str(file_name), "reason": reason})
            elif by_id[image_id] in join.rows:
                join.duplicates += 1
            else:
                join.rows[by_id[image_id]] = row
    return join


@dataclass
class CocoImages:
    """Where a COCO prepare reads its images: ``--images`` (zip or folder) or ``--from`` (a joined copy)."""

    source: ImageSource
    identity: str  # keys the prepared folder: the zip's sha256, the folder's path or the copy's fingerprint
    record: dict[str, Any]  # the manifest's source entry
    join: CopyJoin | None = None

    def finish_import(self, work_dir: Path) -> dict[str, Any]:
        """Write the refused rows of a copy (``work_dir/import/rejected.parquet``); the summary's entries."""
        if self.join is None:
            return {}
        path = write_shard(pa.Table.from_pylist(self.join.rejected, schema=REJECTED_SCHEMA),
                           work_dir / "import" / "rejected.parquet")
        return {"imported": self.join.counts(), "rejected_rows": str(path)}


def _hf_copy(copy: str, copy_format: str | None) -> SourceCopy:
    what = ("prepare coco imports Hugging Face dataset folders (--from-format hf) with an image column and an "
            "image_id or file_name column")
    if copy_format not in (None, "hf"):
        raise ConfigError(f"--from-format {copy_format}: {what}")
    found = open_copy(copy, copy_format, "val")
    if found.format != "hf":
        raise ConfigError(f"--from {copy}: holds a {found.format} copy; {what}")
    return found


@contextlib.contextmanager
def open_coco_images(images: str | None, copy: str | None, copy_format: str | None,
                     listed: list[tuple[int, str]]) -> Iterator[CocoImages]:
    """The images of ``--images`` or of the copy ``--from`` joined to ``listed`` (exactly one of the two)."""
    if (images is None) == (copy is None):
        raise ConfigError("pass exactly one of --images (the zip or its folder) and --from (a Hugging Face dataset "
                          "folder)")
    if images is not None:
        with open_image_source(images) as source:
            sha = sha256_file(source.path) if source.path.is_file() else None
            record = {"path": str(Path(images)), **({"sha256": sha} if sha else {})}
            yield CocoImages(source, sha or str(source.path), record)
        return
    found = _hf_copy(copy or "", copy_format)
    ds = hf_dataset(found.folder, "val")
    join = join_copy(found.folder, ds, listed)
    with HfImages(found.folder, ds, hf_image_column(ds, found.folder), join.rows) as source:
        yield CocoImages(source, found.fingerprint(), found.record(), join)
