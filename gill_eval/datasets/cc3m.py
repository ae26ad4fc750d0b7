"""`gill-eval prepare cc3m`: the Conceptual Captions TSV into example shards and downloaded image shards.

The raw TSV has two tab-separated columns, caption then url, and no header (docs/protocols.md, CC3M). Each
row's key is its 0-based row index, zero-padded to 9 digits, so keys are stable across reruns and sort
in file order. Output: ``dataset_dir("cc3m-<split>")`` with ``examples/`` (key, caption, url) and
``images/`` (see ``output.IMAGE_SCHEMA``), and the coverage (successes, failures by reason) in the
manifest.

Stored pixels (``--store auto``): the validation split holds the FID references, so each photo is stored
as its centred square, LANCZOS to 256, PNG: exactly FID's input (docs/protocols.md), never img2dataset's
letterbox (``resize_mode=border`` pads to a square with white bars, which would stay in every reference).
The training split keeps img2dataset's resize (JPEG, a fraction of the size).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from gill_eval.console import info
from gill_eval.datasets.download import DownloadOptions, download_images, retry_failed, retry_history
from gill_eval.datasets.from_copy import Records, import_images, open_copy
from gill_eval.datasets.output import PreparedDataset, coverage
from gill_eval.datasets.sources import resolve_source
from gill_eval.errors import ConfigError, InputError
from gill_eval.store import Manifest, data_root

SPLITS = ("train", "val")
DEFAULT_STORE = {"train": "img2dataset", "val": "center-crop"}


def dataset_name(split: str) -> str:
    """The prepared dataset's name for a split (``cc3m-train``, ``cc3m-val``)."""
    if split not in SPLITS:
        raise ConfigError(f"--split {split!r}: choose train or val")
    return f"cc3m-{split}"


def _require_text(path: Path, probe: int = 1 << 16) -> None:
    """Refuse a binary file in one line (pyarrow would echo its raw bytes): NUL bytes or non-UTF-8 at the start."""
    with open(path, "rb") as fh:
        head = fh.read(probe)
    if (nul := head.find(b"\0")) >= 0:
        raise InputError(f"{path}: not a text file (NUL byte at offset {nul}); expected a caption<TAB>url TSV")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut by the probe's end
            raise InputError(f"{path}: not UTF-8 text (byte {exc.start}); expected a caption<TAB>url TSV") from None


def read_tsv(path: Path) -> pa.Table:
    """The header-less caption/url TSV as a table (key, caption, url); one-line errors for bad rows.

    No quoting: captions may contain quote characters, so the file is split on tabs only.
    """
    _require_text(path)
    invalid: list[Any] = []

    def on_invalid(row: Any) -> str:
        invalid.append(row)
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=["caption", "url"], use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={"caption": pa.string(), "url": pa.string()}, strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: cannot read as a caption<TAB>url TSV ({str(exc).splitlines()[0]})") from exc
    if invalid:
        row = invalid[0]
        where = f"row {row.number}" if row.number is not None else "a row"
        raise InputError(
            f"{path}: {where}: expected 2 tab-separated columns (caption, url), got {row.actual_columns}"
        )
    first_line = 1
    if table.num_rows and table.column("url")[0].as_py().strip().lower() == "url":
        info(f"{path}: first row looks like a header (caption, url); skipping it")
        table = table.slice(1)
        first_line = 2
    urls = table.column("url")
    not_http = pc.invert(pc.match_substring_regex(urls, r"^https?://"))
    if pc.any(not_http).as_py():
        index = pc.index(not_http, True).as_py()
        raise InputError(
            f"{path}: row {index + first_line}: url column is not an http(s) URL: {urls[index].as_py()[:80]!r}"
        )
    keys = pa.array([f"{i:09d}" for i in range(table.num_rows)], pa.string())
    return pa.table({"key": keys, "caption": table.column("caption"), "url": urls})


def prepare_cc3m(
    tsv: str, split: str, options: DownloadOptions, retry: bool = False, overwrite: bool = False,
    copy: str | None = None, copy_format: str | None = None,
) -> dict[str, Any]:
    """Read the TSV, download its images (resuming), optionally retry failures, write the manifest.

    With ``copy`` (``--from DIR``) the images come from an existing copy instead (``from_copy``), joined to
    the TSV's rows; the copy is recorded among the manifest's sources.
    """
    name = dataset_name(split)
    options = options.with_default_store(DEFAULT_STORE[split])
    source = resolve_source(tsv, data_root() / "sources" / "cc3m")
    table = read_tsv(source.path)
    if table.num_rows == 0:
        raise InputError(f"{source.path}: no rows")
    if copy is not None and retry:
        raise ConfigError("--retry-failed downloads again; it does not combine with --from")
    found = open_copy(copy, copy_format, split) if copy is not None else None
    sources = {"tsv": source.sha256, **({"from": found.fingerprint()} if found else {})}
    prepared = PreparedDataset.open(name, {"sources": sources, "options": options.content()}, overwrite)
    prepared.write_examples(table, options.shard_size)
    imported = None
    if found is not None:
        imported = import_images(found, Records(table.select(["key", "caption", "url"])), prepared.work_dir,
                                 prepared.images_dir, options)
    else:
        download_images(table.select(["key", "url"]), prepared.work_dir, prepared.images_dir, options)
    if retry:
        retry_failed(prepared.work_dir, prepared.images_dir, options)
    images = coverage(prepared.images_dir, table.num_rows)
    counts = {"examples": table.num_rows, "images": images, "retries": retry_history(prepared.work_dir)}
    if imported is not None:
        counts["imported"] = imported["counts"]
    manifest = Manifest(dataset=name, options={"split": split, **options.record()}, counts=counts)
    manifest.sources.append(source.record())
    if found is not None:
        manifest.sources.append(found.record())
    prepared.finish(manifest)
    return {"dataset": name, "dir": str(prepared.dir), **counts,
            **({"rejected_rows": imported["rejected_rows"]} if imported else {})}
