"""`gill-eval prepare partiprompts`: PartiPrompts and the GILL decision annotations into one table."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from gill_eval.console import emit_json, info
from gill_eval.datasets import partiprompts as pp
from gill_eval.store import Manifest, dataset_dir, write_manifest, write_shard
from gill_eval.store.shards import shard_name

DATASET = "partiprompts"


def prepare(source: str | None = None, verify: bool = True) -> dict[str, Any]:
    """Read (or download) the four files, build the table, write it and the manifest; return the counts.

    The shard is renamed into place before the manifest is written, so an interrupted run never leaves
    a manifest describing a missing or partial table.
    """
    out = dataset_dir(DATASET)
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


def prepare_partiprompts(
    source: Annotated[
        Optional[str],
        typer.Option("--source", help="Folder with the four TSV files, or a base URL; default: the pinned raw URLs."),
    ] = None,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Require each file's pinned sha256.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print counts per decision and split as JSON.")] = False,
) -> None:
    """PartiPrompts and the GILL retrieve-vs-generate annotations into one Parquet table."""
    counts = prepare(source, verify=verify)
    if as_json:
        emit_json(counts)
        return
    d, s = counts["decisions"], counts["splits"]
    info(f"partiprompts: {counts['rows']} prompts -> {dataset_dir(DATASET)}")
    info(f"  decisions: {d['gen']} gen / {d['ret']} ret / {d['same']} same ({counts['usable']} usable)")
    for split in ("train", "val"):
        if split in s:
            info(f"  {split}: {s[split]['gen']} gen / {s[split]['ret']} ret")
