"""PartiPrompts and the GILL decision annotations into one table (``gill-eval prepare partiprompts``, datasets/cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gill_eval.datasets import partiprompts as pp
from gill_eval.store import Manifest, dataset_dir, write_manifest, write_shard
from gill_eval.store.lock import holding_folder
from gill_eval.store.shards import shard_name

DATASET = "partiprompts"


def prepare(source: str | None = None, verify: bool = True) -> dict[str, Any]:
    """Read (or download) the four files, build the table, write it and the manifest; return the counts.

    The shard is renamed into place before the manifest is written, so an interrupted run never leaves
    a manifest describing a missing or partial table.
    """
    out = dataset_dir(DATASET)
    with holding_folder(out, "prepare partiprompts"):  # one writer at a time (docs/reliability.md)
        return _prepare(out, source, verify)


def _prepare(out: Path, source: str | None, verify: bool) -> dict[str, Any]:
    files = pp.resolve_sources(source, out / "sources", verify=verify)
    table = pp.build_table({name: path for name, (path, _) in files.items()})
    write_shard(table, out / "examples" / shard_name(0))
    counts = pp.table_counts(table)
    manifest = Manifest(
        dataset=DATASET,
        options={"source": source or "pinned", "verify_sha256": verify, "train_size": pp.TRAIN_SIZE,
                 "rule": "gen or ret kept when >=4 votes, or exactly 3 with the other <=1; else same"},
        counts=counts,
    )
    for path, origin in files.values():
        manifest.add_source(path, origin=origin)
    write_manifest(out, manifest)
    return counts
