"""``prepare cc3m|vist --from DIR``: an existing copy of a dataset's images into the same shards a download makes.

Sources (``--from-format``, detected when unambiguous, docs/protocols.md "Importing existing copies"):

- ``img2dataset``: a folder img2dataset wrote, in any of its output formats. Its ``NNNNN.parquet`` files
  list every row it tried (caption, url, status, error); the image bytes are in the same Parquet file
  (``parquet`` output), in ``NNNNN.tar`` (``webdataset``) or in ``NNNNN/<key>.<ext>`` (``files``).
- ``webdataset``: ``*.tar`` shards read with the ``webdataset`` library; a sample's image is its
  ``jpg``/``jpeg``/``png``/``webp`` member, its caption ``txt`` (or ``json["caption"]``), its URL
  ``json["url"]``.
- ``hf``: a Hugging Face ``datasets`` folder (``save_to_disk``, or a script-free repository of data files
  ``load_dataset`` opens), with an image column and a ``caption``/``url`` column.

Joining (``Records``): the file of record gives every image its key, URL and, where it has one, caption:
CC3M's TSV (key = row number), VIST's SIS file (key = Flickr photo id, URL = ``url_o``, no caption). A source
row joins the record with its URL; a source without URLs joins by its key, read as the row number (CC3M,
and then only if its caption matches) or as the record's key itself (VIST). A row whose caption differs
from the record's, whose URL or key is not in the file of record (``not_in_<name>``), or that repeats a key
already joined is never joined: it is counted and listed in ``download/import/rejected.parquet``.
Records the copy lacks get status ``missing_from_source``; rows the copy records as failed keep their
failure reason; bytes that do not decode count as ``decode_error``. Then each image gets what a download
of the split stores (``image_store``): the Pillow protocol resizes (CC3M val's centre crop, GILL's 224
squash) from the copy's pixels, or, for ``img2dataset``, the copy's bytes unchanged.

Streaming and resume: a first pass reads the copy one source file (or, for ``hf``, one block of rows) at a
time and scatters its rows, at most ``FLUSH_ROWS`` images in memory, into spill files named by the image
shard they belong to (``download/import/spill/<unit>/``); a second pass builds each image shard from its
spill files. Both passes are units of work with done markers, so an interrupted import resumes. Memory is
one flush and one image shard, plus a URL -> row map of the records (an integer pair per row).

``hf_dataset``/``hf_image_column`` also serve ``coco_copy`` (``prepare coco --from``), which joins by image id.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gill_eval.console import track
from gill_eval.datasets.archive import check_image
from gill_eval.datasets.download import DownloadOptions, classify
from gill_eval.datasets.image_store import IMG2DATASET, store_images
from gill_eval.datasets.output import IMAGE_SCHEMA
from gill_eval.errors import ConfigError, InputError
from gill_eval.store import UnitOfWork, WorkPlan, cache_root, remove_in_root, write_shard
from gill_eval.store.shards import shard_name

FORMATS = ("img2dataset", "webdataset", "hf")
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
CAPTION_COLUMNS = ("caption", "txt", "text")
URL_COLUMNS = ("url", "image_url")
KEY_COLUMNS = ("key", "__key__")
MISSING = "missing_from_source"
FLUSH_ROWS = 512  # source images held before they are spilled to disk
CHECK_BLOCK = 256  # images decoded per thread-pool task
HF_BLOCK_ROWS = 10_000  # rows of a Hugging Face dataset per unit of work
HF_SPLITS = {"val": ("validation", "val"), "train": ("train",)}


@dataclass(frozen=True)
class SourceRow:
    """One row of a copy: its own key, URL and caption where it has them, img2dataset's status, the bytes."""

    key: str
    url: str | None
    caption: str | None
    status: str
    error_message: str | None
    image: bytes | None


@dataclass(frozen=True)
class SourceCopy:
    """A folder holding a copy of a dataset, read unit by unit (a source file or a block of rows)."""

    folder: Path
    format: str
    units: tuple[str, ...]
    split: str

    def fingerprint(self) -> str:
        """sha256 over the copy's file names and sizes (hashing every byte of 3M images is left out)."""
        files = sorted(p for p in self.folder.rglob("*") if p.is_file())
        listing = [(p.relative_to(self.folder).as_posix(), p.stat().st_size) for p in files]
        return hashlib.sha256(json.dumps([self.format, listing]).encode()).hexdigest()

    def record(self) -> dict[str, Any]:
        """The manifest's provenance entry for the copy."""
        return {"path": str(self.folder), "format": self.format, "units": len(self.units),
                "sha256": self.fingerprint(), "kind": "imported copy"}

    def rows(self, unit: str) -> Iterator[SourceRow]:
        if self.format == "img2dataset":
            return _img2dataset_rows(self.folder, unit)
        if self.format == "webdataset":
            return _webdataset_rows(self.folder / unit)
        return _hf_rows(self.folder, self.split, unit)


@dataclass(frozen=True)
class Records:
    """The images of record a copy is joined to: ``table`` (key, caption, url; sorted by key, so that the
    image shards are its row ranges) from the file called ``name`` (rejects: ``not_in_<name>``). A copy row
    without a URL is matched by its key read as a row number (``keys_are_rows``, CC3M's TSV) or by the key
    itself (VIST's photo ids). A null caption (VIST's photos have none) is not checked."""

    table: pa.Table
    name: str = "tsv"
    keys_are_rows: bool = True

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why a copy row is not joined, as counted and listed."""
        return ("caption_mismatch", f"not_in_{self.name}", "unverifiable")


def _numbered(folder: Path, suffix: str) -> list[Path]:
    return sorted(p for p in folder.glob(f"*{suffix}") if p.is_file() and not p.name.startswith((".", "_")))


def detect_format(folder: Path) -> str:
    """The format of a copy from its files; an error naming ``--from-format`` when it is unclear."""
    found = []
    if list(folder.glob("*_stats.json")) and _numbered(folder, ".parquet"):
        found.append("img2dataset")
    elif _numbered(folder, ".tar"):
        found.append("webdataset")
    if any((folder / name).is_file() for name in ("state.json", "dataset_dict.json", "dataset_info.json")) or (
            not found and (list(folder.glob("data/*.parquet")) or list(folder.glob("*.arrow")))):
        found.append("hf")
    if len(found) != 1:
        what = "both " + " and ".join(found) if found else "no img2dataset, webdataset or Hugging Face files"
        raise ConfigError(f"--from {folder}: found {what}; pass --from-format {'|'.join(FORMATS)}")
    return found[0]


def open_copy(folder: str | os.PathLike[str], fmt: str | None, split: str) -> SourceCopy:
    """The copy in ``folder`` with its units of work; one-line errors for a missing or empty copy."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"--from {root}: not a folder")
    fmt = fmt or detect_format(root)
    if fmt not in FORMATS:
        raise ConfigError(f"--from-format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "img2dataset":
        units = tuple(p.name for p in _numbered(root, ".parquet"))
    elif fmt == "webdataset":
        units = tuple(p.name for p in _numbered(root, ".tar"))
    else:
        n = len(hf_dataset(root, split))
        units = tuple(f"rows-{start:09d}" for start in range(0, n, HF_BLOCK_ROWS))
    if not units:
        raise InputError(f"--from {root}: no {fmt} files in this folder")
    return SourceCopy(root, fmt, units, split)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _img2dataset_rows(folder: Path, unit: str) -> Iterator[SourceRow]:
    """Rows of one img2dataset shard: its Parquet lists every row; the bytes are beside it per output format."""
    path = folder / unit
    parquet = pq.ParquetFile(path)
    names = set(parquet.schema_arrow.names)
    missing = {"key", "status"} - names
    if missing:
        raise InputError(f"{path}: not an img2dataset shard (no {', '.join(sorted(missing))} column)")
    tar = path.with_suffix(".tar")
    samples = _TarImages(tar) if "jpg" not in names and tar.is_file() else None
    files = path.with_suffix("")
    for batch in parquet.iter_batches(batch_size=FLUSH_ROWS):
        columns = {name: batch.column(name).to_pylist() for name in batch.schema.names}
        for i, key in enumerate(columns["key"]):
            status = columns["status"][i]
            image = None
            if status == "success":
                if "jpg" in columns:
                    image = columns["jpg"][i]
                elif samples is not None:
                    image = samples.take(str(key))
                else:
                    image = _file_image(files, key)
            yield SourceRow(str(key), columns.get("url", [None] * len(columns["key"]))[i],
                            columns.get("caption", [None] * len(columns["key"]))[i], status,
                            columns.get("error_message", [None] * len(columns["key"]))[i], image)


class _TarImages:
    """The images of one img2dataset tar, taken by key while its Parquet is read. img2dataset writes both in
    the same order, so the tar is read in step and holds nothing back; a sample read ahead of its row waits
    in a dictionary (bounded by the tar's size)."""

    def __init__(self, tar: Path) -> None:
        self.samples = _samples(tar)
        self.ahead: dict[str, bytes | None] = {}

    def take(self, key: str) -> bytes | None:
        if key in self.ahead:
            return self.ahead.pop(key)
        for sample in self.samples:
            if sample["__key__"] == key:
                return _sample_image(sample)
            self.ahead[sample["__key__"]] = _sample_image(sample)
        return None


def _file_image(folder: Path, key: str) -> bytes | None:
    for ext in IMAGE_EXTENSIONS:
        if (path := folder / f"{key}.{ext}").is_file():
            return path.read_bytes()
    return None


def _samples(tar: Path) -> Iterator[dict[str, Any]]:
    import webdataset as wds

    yield from wds.WebDataset([str(tar)], shardshuffle=False, empty_check=False)


def _sample_image(sample: dict[str, Any]) -> bytes | None:
    return next((sample[ext] for ext in IMAGE_EXTENSIONS if sample.get(ext) is not None), None)


def _webdataset_rows(tar: Path) -> Iterator[SourceRow]:
    for sample in _samples(tar):
        meta: dict[str, Any] = {}
        if sample.get("json") is not None:
            try:
                meta = json.loads(sample["json"])
            except ValueError as exc:
                raise InputError(f"{tar} sample {sample['__key__']}: its json member is not JSON ({exc})") from exc
        caption = _text(sample.get("txt")) if sample.get("txt") is not None else meta.get("caption")
        image = _sample_image(sample)
        status = meta.get("status", "success") if image is not None else "no_image_in_sample"
        yield SourceRow(str(sample["__key__"]), meta.get("url"), caption, status, meta.get("error_message"), image)


def hf_dataset(folder: Path, split: str) -> Any:
    """The Hugging Face dataset in ``folder`` (``load_from_disk``, else ``load_dataset`` of local files)."""
    import datasets

    if (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file():
        ds = datasets.load_from_disk(str(folder))
    else:
        ds = datasets.load_dataset(str(folder), cache_dir=str(cache_root() / "hf-datasets"))  # Arrow cache, not ~/.cache
    if isinstance(ds, datasets.DatasetDict):
        names = [n for n in HF_SPLITS.get(split, (split,)) if n in ds] or (list(ds) if len(ds) == 1 else [])
        if not names:
            raise InputError(f"--from {folder}: splits {', '.join(ds)}; none is {split!r}")
        ds = ds[names[0]]
    return ds


def hf_column(ds: Any, choices: tuple[str, ...]) -> str | None:
    """The first of ``choices`` that is a column of the Hugging Face dataset ``ds``."""
    return next((c for c in choices if c in ds.column_names), None)


def hf_image_column(ds: Any, folder: Path) -> str:
    """The image column of ``ds``: its ``Image`` feature, else a ``jpg``/``image``/``png`` column of bytes."""
    import datasets

    image_col = next((n for n, f in ds.features.items() if isinstance(f, datasets.Image)), None)
    image_col = image_col or hf_column(ds, ("jpg", "image", "png"))
    if image_col is None:
        raise InputError(f"--from {folder}: no image column (features: {', '.join(ds.column_names)})")
    return image_col


def hf_image_bytes(value: Any) -> bytes | None:
    """The bytes of one image cell (an ``Image`` feature's ``{bytes, path}``, or bytes); a path alone is not read."""
    return value.get("bytes") if isinstance(value, dict) else value


def _hf_rows(folder: Path, split: str, unit: str) -> Iterator[SourceRow]:
    ds = hf_dataset(folder, split)
    image_col = hf_image_column(ds, folder)
    caption_col = hf_column(ds, CAPTION_COLUMNS)
    url_col = hf_column(ds, URL_COLUMNS)
    key_col = hf_column(ds, KEY_COLUMNS)
    start = int(unit.removeprefix("rows-"))
    table = ds.with_format("arrow")
    for first in range(start, min(start + HF_BLOCK_ROWS, len(ds)), FLUSH_ROWS):
        block = table[first:min(first + FLUSH_ROWS, start + HF_BLOCK_ROWS, len(ds))]
        images = block.column(image_col).to_pylist()
        captions = block.column(caption_col).to_pylist() if caption_col else [None] * len(images)
        urls = block.column(url_col).to_pylist() if url_col else [None] * len(images)
        keys = block.column(key_col).to_pylist() if key_col else [str(first + i) for i in range(len(images))]
        for key, image, caption, url in zip(keys, images, captions, urls):
            data = hf_image_bytes(image)
            yield SourceRow(str(key), url, caption, "success" if data else "no_image_in_sample", None, data)


class RecordIndex:
    """Which record a source row is: by URL (an integer hash -> row map, checked on hit), else by key."""

    def __init__(self, records: Records) -> None:
        table = records.table
        self.keys = table.column("key")
        self.captions = table.column("caption")
        self.urls = table.column("url")
        self.not_found = f"not_in_{records.name}"
        self.by_url: dict[int, int] = {}
        self.by_key: dict[str, int] | None = None if records.keys_are_rows else {}
        for start in range(0, table.num_rows, 1 << 16):
            for i, url in enumerate(self.urls.slice(start, 1 << 16).to_pylist(), start):
                self.by_url.setdefault(hash(url), i)
            if self.by_key is not None:
                self.by_key.update((k, i) for i, k in enumerate(self.keys.slice(start, 1 << 16).to_pylist(), start))

    def _by_key(self, row: SourceRow) -> int | None:
        if self.by_key is not None:
            return self.by_key.get(row.key)
        return int(row.key) if row.key.isdigit() and int(row.key) < len(self.keys) else None

    def row_of(self, row: SourceRow) -> tuple[int | None, str | None]:
        """(record row, None) when the source row joins, else (None, why not)."""
        if row.url is not None:
            i = self.by_url.get(hash(row.url))
            if i is None or self.urls[i].as_py() != row.url:
                return None, self.not_found
        elif row.caption is None and self.by_key is None:
            return None, "unverifiable"
        elif (i := self._by_key(row)) is None:
            return None, self.not_found
        want = self.captions[i].as_py()
        if row.caption is not None and want is not None and row.caption.strip() != want.strip():
            return None, "caption_mismatch"
        return i, None


def _spill_dir(work_dir: Path) -> Path:
    return work_dir / "import" / "spill"


def _scatter_unit(copy: SourceCopy, unit: UnitOfWork, index: RecordIndex, reasons: tuple[str, ...],
                  shard_size: int, out: Path) -> dict[str, Any]:
    """Spill one unit's joined rows by target image shard; returns its counts (and writes its rejects)."""
    if out.exists():  # a unit cut short before: start it again (a removal inside the data root only)
        remove_in_root(out)
    out.mkdir(parents=True)
    buffered: dict[int, list[dict[str, Any]]] = {}
    rejected: list[dict[str, Any]] = []
    counts = {"rows": 0, "joined": 0, **{why: 0 for why in reasons}}
    flushes = 0

    def flush() -> None:
        nonlocal flushes
        for target, rows in buffered.items():
            write_shard(pa.Table.from_pylist(rows, schema=IMAGE_SCHEMA), out / f"{target:05d}-{flushes:05d}.parquet")
        buffered.clear()
        flushes += 1

    for row in copy.rows(unit.uid):
        counts["rows"] += 1
        i, why = index.row_of(row)
        if why is not None:
            counts[why] += 1
            rejected.append({"unit": unit.uid, "source_key": row.key, "url": row.url, "caption": row.caption,
                             "reason": why})
            continue
        counts["joined"] += 1
        ok = row.status == "success" and row.image is not None
        # a failure the copy recorded keeps its reason; a row without bytes is missing from the copy
        status = "success" if ok else MISSING if row.status in ("success", "no_image_in_sample") else classify(
            row.status, row.error_message)
        buffered.setdefault(i // shard_size, []).append({
            "key": index.keys[i].as_py(), "image": row.image if ok else None, "status": status,
            "error_message": row.error_message, "url": index.urls[i].as_py(),
            "sha256": hashlib.sha256(row.image).hexdigest() if ok else None})
        if sum(len(v) for v in buffered.values()) >= FLUSH_ROWS:
            flush()
    flush()
    schema = pa.schema([("unit", pa.string()), ("source_key", pa.string()), ("url", pa.string()),
                        ("caption", pa.string()), ("reason", pa.string())])
    write_shard(pa.Table.from_pylist(rejected, schema=schema), out / "rejected.parquet")
    return counts


def _check_bytes(table: pa.Table, workers: int) -> pa.Table:
    """``img2dataset`` store: the copy's bytes kept, each decoded once to count undecodable ones."""
    columns = {n: table.column(n).to_pylist() for n in ("image", "status", "error_message", "width", "height",
                                                         "original_width", "original_height")}
    todo = [i for i, s in enumerate(columns["status"]) if s == "success"]
    blocks = [todo[i:i + CHECK_BLOCK] for i in range(0, len(todo), CHECK_BLOCK)]  # a task per block, not per image
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="gill-eval-import") as pool:
        checked = [r for block in pool.map(lambda b: [check_image(columns["image"][i]) for i in b], blocks) for r in block]
    for i, result in zip(todo, checked):
        columns["status"][i], columns["error_message"][i] = result.status, result.error_message
        columns["width"][i] = columns["original_width"][i] = result.width
        columns["height"][i] = columns["original_height"][i] = result.height
        if result.status != "success":
            columns["image"][i] = None
    for name, values in columns.items():
        field = table.schema.field(name)
        table = table.set_column(table.schema.get_field_index(name), field, pa.array(values, field.type))
    return table


def _gather_shard(spill: Path, target: int, records: pa.Table, shard_size: int,
                  options: DownloadOptions) -> tuple[pa.Table, int]:
    """Image shard ``target`` from its spilled rows (first success per key wins; the other rows of a key are
    counted as duplicates), missing keys filled, images stored as the split stores them."""
    parts = [pq.read_table(p) for p in sorted(spill.glob(f"*/{target:05d}-*.parquet"))]
    found = pa.concat_tables(parts) if parts else IMAGE_SCHEMA.empty_table()
    duplicates = found.num_rows - (pc.count_distinct(found.column("key")).as_py() if found.num_rows else 0)
    if duplicates:  # rare: keep one row per key, preferring a success
        chosen: dict[str, dict[str, Any]] = {}
        for row in found.to_pylist():
            old = chosen.get(row["key"])
            if old is None or (old["status"] != "success" and row["status"] == "success"):
                chosen[row["key"]] = row
        found = pa.Table.from_pylist(list(chosen.values()), schema=IMAGE_SCHEMA)
    block = records.slice(target * shard_size, shard_size)
    missing = block.filter(pc.invert(pc.is_in(block.column("key"), value_set=found.column("key").combine_chunks())))
    filler = pa.table({"key": missing.column("key"), "status": pa.repeat(MISSING, missing.num_rows),
                       "error_message": pa.repeat("the imported copy has no row for this URL", missing.num_rows),
                       "url": missing.column("url")})
    filler = pa.table([filler.column(f.name) if f.name in filler.column_names else pa.nulls(missing.num_rows, f.type)
                       for f in IMAGE_SCHEMA], schema=IMAGE_SCHEMA)
    table = pa.concat_tables([found, filler]).sort_by("key")
    workers = len(os.sched_getaffinity(0))
    if options.store == IMG2DATASET:
        return _check_bytes(table, workers), duplicates
    return store_images(table, options.store, options.image_size, workers=workers), duplicates


def import_images(copy: SourceCopy, records: Records, work_dir: Path, images_dir: Path,
                  options: DownloadOptions) -> dict[str, Any]:
    """Import ``copy`` into ``images_dir`` (shards of ``options.shard_size`` records); resumes; returns counts."""
    spill = _spill_dir(work_dir)
    scatter = WorkPlan(work_dir / "import" / "scatter", [UnitOfWork(u, i) for i, u in enumerate(copy.units)])
    pending = scatter.pending()
    if pending:
        index = RecordIndex(records)
        for unit in track(pending, f"reading {copy.format} copy"):
            counts = _scatter_unit(copy, unit, index, records.reasons, options.shard_size, spill / unit.uid)
            scatter.mark_done(unit, counts)
    n_shards = max(1, -(-records.table.num_rows // options.shard_size))
    gather = WorkPlan(images_dir, [UnitOfWork(f"{i:05d}", i) for i in range(n_shards)])
    to_write = gather.pending()
    if to_write and not spill.is_dir():
        raise InputError(f"{images_dir}: image shards to rebuild but the import's spill files are gone; "
                         "pass --overwrite to import again")
    for unit in track(to_write, "writing image shards"):
        table, duplicates = _gather_shard(spill, unit.index, records.table, options.shard_size, options)
        path = write_shard(table, images_dir / shard_name(unit.index))
        gather.mark_done(unit, {"rows": table.num_rows, "duplicates": duplicates}, [path])
    totals: dict[str, int] = {"duplicates": 0}
    for unit in scatter.units:
        for key, value in scatter.done_info(unit).items():
            if key != "uid":
                totals[key] = totals.get(key, 0) + value
    for unit in gather.units:
        totals["duplicates"] += gather.done_info(unit).get("duplicates", 0)
    rejected = work_dir / "import" / "rejected.parquet"
    parts = [pq.read_table(p) for p in sorted(spill.glob("*/rejected.parquet"))]
    if parts:
        write_shard(pa.concat_tables(parts), rejected)
        remove_in_root(spill)  # the image shards hold everything now
    return {**copy.record(), "counts": totals, "rejected_rows": str(rejected)}

