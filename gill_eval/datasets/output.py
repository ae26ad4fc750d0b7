"""The folder of one prepared dataset: what it was made from, its example shards, and its manifest.

Layout of ``dataset_dir(NAME)``::

    _state.json     sources (sha256) and content options of the run that started this folder
    examples/       one row per example, in source order ({i:05d}.parquet, done markers in _done/)
    images/         one row per image: IMAGE_SCHEMA
    download/       img2dataset's input list and output (downloaded datasets only)
    manifest.json   written last: sources, options, counts (coverage)

A rerun with the same sources and options resumes; with other ones it is refused (``--overwrite``
starts again), so a folder never mixes shards made from different inputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from gill_eval.console import info
from gill_eval.errors import InputError
from gill_eval.store import (Manifest, UnitOfWork, WorkPlan, atomic_write_json, dataset_dir, remove_in_root, write_manifest,
                             write_shard)
from gill_eval.store.lock import hold_folder, release_folder
from gill_eval.store.shards import iter_batches, shard_name

STATE_NAME = "_state.json"

IMAGE_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("image", pa.binary()),
        ("status", pa.string()),
        ("error_message", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("original_width", pa.int32()),
        ("original_height", pa.int32()),
        ("sha256", pa.string()),
        ("url", pa.string()),
    ]
)
"""Columns of every ``images/`` shard. ``status`` is 'success' or the failure reason (``http_404``,
``timeout``, ``decode_error``, ``missing_file``, ...); ``error_message`` keeps the raw message;
``sha256`` is of the original bytes; ``url`` is null for images read from local files."""


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            out += _diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


@dataclass
class PreparedDataset:
    """An output folder whose inputs were checked against those of earlier runs."""

    name: str
    dir: Path

    @classmethod
    def open(cls, name: str, fingerprint: dict[str, Any], overwrite: bool = False) -> PreparedDataset:
        """Open ``dataset_dir(name)`` for a run made from ``fingerprint`` (sources and content options).

        Call this only after the inputs parsed cleanly: nothing is written or removed before.
        """
        folder = dataset_dir(name)
        state = folder / STATE_NAME
        fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True))
        hold_folder(folder, f"prepare {name}")  # one writer per dataset: a second run refuses (docs/reliability.md)
        if overwrite and folder.exists():
            info(f"--overwrite: removing {folder}")
            remove_in_root(folder)  # refused unless it resolves inside the data root (docs/reliability.md)
        if state.is_file():
            old = json.loads(state.read_text(encoding="utf-8"))
            changed = _diff(old, fingerprint)
            if changed:
                raise InputError(
                    f"{folder}: was started from other inputs or options ({', '.join(changed)}); "
                    "pass --overwrite to start again, or choose another --data-dir"
                )
        else:
            atomic_write_json(state, fingerprint)
        return cls(name, folder)

    @property
    def examples_dir(self) -> Path:
        return self.dir / "examples"

    @property
    def images_dir(self) -> Path:
        return self.dir / "images"

    @property
    def work_dir(self) -> Path:
        return self.dir / "download"

    def write_examples(self, table: pa.Table, shard_size: int) -> None:
        """Write the example table as shards of ``shard_size`` rows (skipping shards already done)."""
        write_table_shards(table, self.examples_dir, shard_size)

    def finish(self, manifest: Manifest) -> Path:
        """Write the manifest (last, after every shard is in place), then release the dataset's lock."""
        path = write_manifest(self.dir, manifest)
        release_folder(self.dir)
        return path


def write_table_shards(table: pa.Table, folder: Path, shard_size: int) -> None:
    """Split ``table`` into ``{i:05d}.parquet`` shards, each a unit of work (atomic, resumable)."""
    count = max(1, -(-table.num_rows // shard_size))
    plan = WorkPlan(folder, [UnitOfWork(shard_name(i).removesuffix(".parquet"), i) for i in range(count)])
    for unit in plan.pending():
        part = table.slice(unit.index * shard_size, shard_size)
        path = write_shard(part, folder / shard_name(unit.index))
        plan.mark_done(unit, {"rows": part.num_rows}, [path])


def status_counts(images_dir: Path) -> dict[str, int]:
    """How many image rows have each status (streams only the status column)."""
    counts: dict[str, int] = {}
    for batch in iter_batches(images_dir, columns=["status"]):
        for value, n in zip(*_value_counts(batch.column(0))):
            counts[value] = counts.get(value, 0) + n
    return dict(sorted(counts.items()))


def _value_counts(column: pa.Array) -> tuple[list[str], list[int]]:
    vc = pc.value_counts(column)
    return vc.field("values").to_pylist(), vc.field("counts").to_pylist()


def image_statuses(images_dir: Path) -> Iterator[tuple[str, str]]:
    """(key, status) of every image row, streamed."""
    for batch in iter_batches(images_dir, columns=["key", "status"]):
        yield from zip(batch.column(0).to_pylist(), batch.column(1).to_pylist())


def coverage(images_dir: Path, expected: int) -> dict[str, Any]:
    """Successes and failures by reason over the image shards, checked against the expected row count."""
    by_status = status_counts(images_dir)
    total = sum(by_status.values())
    if total != expected:
        raise InputError(f"{images_dir}: holds {total} image rows, expected {expected}; rerun to finish")
    ok = by_status.pop("success", 0)
    return {"total": total, "success": ok, "failed": total - ok, "failed_by_reason": by_status}


def print_summary(summary: dict[str, Any], as_json: bool) -> None:
    """The command's result: JSON on stdout with ``--json``, otherwise a short human summary."""
    from gill_eval.console import emit_json

    if as_json:
        emit_json({k: v for k, v in summary.items() if k != "details"})
        return
    import typer

    typer.echo(f"{summary['dataset']}: {summary['examples']} examples in {summary['dir']}")
    images = summary.get("images") or summary.get("reference_images")
    if images:
        share = 100.0 * images["success"] / images["total"] if images["total"] else 0.0
        typer.echo(f"  images: {images['success']} of {images['total']} usable ({share:.1f}%)")
        for reason, n in images["failed_by_reason"].items():
            typer.echo(f"    {reason}: {n}")
    for key, value in summary.get("details", {}).items():
        typer.echo(f"  {key}: {value}")
