"""``gill-eval export hf DIR``: a prepared dataset, or the generated images, as Hugging Face Parquet.

``datasets.load_dataset("parquet", data_dir=DIR)`` opens the folder: ``DIR/data/<split>-NNNNN.parquet``
files whose Arrow schema carries the ``datasets`` features (the ``image`` column is an ``Image`` feature:
``{bytes, path}``, decoded to PIL on access), and ``DIR/README.md``, a dataset card whose YAML lists the
split's files and whose body records the provenance (the manifest's sources, options and content hash, or
the results' models and benchmarks). Rows are streamed ``ROWS_PER_GROUP`` at a time into files of at
most ``ROWS_PER_FILE`` rows; each file is written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gill_eval.store import atomic_path, atomic_write_text

ROWS_PER_GROUP = 256
ROWS_PER_FILE = 10_000


def _features(columns: dict[str, str]) -> Any:
    """``datasets.Features`` for ``columns`` (name -> "image", "string", "int64" or "float64")."""
    import datasets

    return datasets.Features({name: datasets.Image() if kind == "image" else datasets.Value(kind)
                              for name, kind in columns.items()})


def _chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_parquet(rows: Iterable[dict[str, Any]], columns: dict[str, str], out: Path, split: str) -> list[Path]:
    """Stream ``rows`` (image columns as bytes or None) into ``out/data/<split>-NNNNN.parquet``."""
    schema = _features(columns).arrow_schema
    images = [name for name, kind in columns.items() if kind == "image"]
    chunks = _chunks(rows, ROWS_PER_GROUP)
    chunk = next(chunks, None)
    written: list[Path] = []
    while chunk is not None:
        path = out / "data" / f"{split}-{len(written):05d}.parquet"
        with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
            in_file = 0
            while chunk is not None and in_file < ROWS_PER_FILE:
                for row in chunk:
                    for name in images:
                        row[name] = None if row[name] is None else {"bytes": row[name], "path": None}
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                in_file += len(chunk)
                chunk = next(chunks, None)
        written.append(path)
    return written


def write_card(out: Path, title: str, split: str, provenance: dict[str, Any], columns: dict[str, str]) -> Path:
    """``out/README.md``: the dataset card (YAML config naming the split's files, then the provenance)."""
    fields = "\n".join(f"- `{name}`: {kind}" for name, kind in columns.items())
    text = (f"---\nconfigs:\n- config_name: default\n  data_files:\n  - split: {split}\n    path: data/{split}-*.parquet\n"
            f"---\n\n# {title}\n\nWritten by `gill-eval export hf`. Open it with "
            f"`datasets.load_dataset(\"parquet\", data_dir=...)`.\n\n## Columns\n\n{fields}\n\n## Provenance\n\n"
            f"```json\n{json.dumps(provenance, indent=2, sort_keys=True, default=str)}\n```\n")
    atomic_write_text(out / "README.md", text)
    return out / "README.md"


PREPARED_COLUMNS = {"key": "string", "caption": "string", "status": "string", "image": "image"}
GENERATED_COLUMNS = {"id": "string", "benchmark": "string", "context": "string", "model": "string",
                     "model_fingerprint": "string", "seed": "int64", "example_id": "string", "prompt": "string",
                     "status": "string",
                     "limit": "string", "clip_similarity": "float64", "lpips": "float64", "clip_score": "float64",
                     "image": "image"}


def _remove_stale(out: Path, split: str, keep: list[Path]) -> None:
    """Files of an earlier, longer export of the same split (they would join the new rows)."""
    for path in (out / "data").glob(f"{split}-*.parquet"):
        if path not in keep:
            path.unlink()


def export_hf(out: Path, dataset: str | None = None, results: list[dict[str, Any]] | None = None,
              benchmarks: list[str] | None = None) -> dict[str, Any]:
    """A prepared ``dataset`` (split: validation for ``*-val``, else train), or the generated images of
    ``results`` (split: test), as Hugging Face Parquet with a dataset card; returns what was written."""
    from gill_eval.exports.images import generated_records
    from gill_eval.exports.prepared import prepared_records

    if dataset is not None:
        rows, prov = prepared_records(dataset)
        columns, split, title = PREPARED_COLUMNS, "validation" if dataset.endswith("-val") else "train", dataset
    else:
        columns, split, title = GENERATED_COLUMNS, "test", "gill-eval generated images"
        generated = generated_records(results or [], benchmarks)
        rows = ({**{c: None for c in columns}, **record, "id": stem.as_posix(), "limit": str(record["limit"]),
                 "image": png} for stem, record, png in generated)
        prov = {"results": sorted({(r["benchmark"], r["model"]["label"], r["model"]["fingerprint_hash"])
                                   for r in results or []})}
    counted = _Counter(rows)
    files = write_parquet(counted, columns, out, split)
    _remove_stale(out, split, files)
    card = write_card(out, title, split, prov, columns)
    return {"folder": str(out), "split": split, "rows": counted.n, "files": len(files), "card": str(card)}


class _Counter:
    """Passes rows through, counting them."""

    def __init__(self, rows: Iterable[dict[str, Any]]) -> None:
        self.rows, self.n = iter(rows), 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row in self.rows:
            self.n += 1
            yield row
