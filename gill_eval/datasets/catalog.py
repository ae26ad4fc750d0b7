"""Which datasets are prepared under the data root: ``gill-eval datasets list`` and the did-you-mean of ``--dataset``."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any

import typer

from gill_eval.console import emit_json, info
from gill_eval.errors import InputError
from gill_eval.store import data_root, dataset_dir, read_manifest
from gill_eval.store.manifest import MANIFEST_NAME

app = typer.Typer(help="Prepared datasets under the data root.", no_args_is_help=True)


def prepared_names() -> list[str]:
    """Names of the datasets whose manifest exists (a manifest is written last, so these are complete)."""
    root = data_root() / "datasets"
    return sorted(p.parent.name for p in root.glob(f"*/{MANIFEST_NAME}")) if root.is_dir() else []


def require_prepared(name: str) -> Path:
    """The folder of prepared dataset ``name``; else a one-line error listing the prepared names."""
    folder = dataset_dir(name)
    if (folder / MANIFEST_NAME).is_file():
        return folder
    names = prepared_names()
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    known = f"prepared: {', '.join(names)}" if names else "none is prepared yet"
    raise InputError(f"--dataset {name!r}: not prepared under {data_root()} ({hint}{known}; "
                     "see `gill-eval datasets list`, or run `gill-eval prepare`)")


def _coverage(counts: dict[str, Any]) -> str:
    images = counts.get("images") if isinstance(counts.get("images"), dict) else None
    if images and images.get("total"):
        return f"{images.get('success', 0)}/{images['total']} images ({100 * images.get('success', 0) / images['total']:.1f}%)"
    return "-"


def dataset_rows() -> list[dict[str, Any]]:
    rows = []
    for name in prepared_names():
        m = read_manifest(dataset_dir(name))
        rows.append({"name": name, "examples": m.counts.get("examples"), "coverage": _coverage(m.counts),
                     "counts": m.counts, "created": m.created, "gill_eval_version": m.gill_eval_version,
                     "folder": str(dataset_dir(name))})
    return rows


@app.command("list")
def list_datasets(json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False) -> None:
    """Prepared datasets with their example counts and image coverage."""
    rows = dataset_rows()
    if json:
        emit_json(rows)
        return
    if not rows:
        info(f"no prepared dataset under {data_root()}; run `gill-eval prepare ...` (or `gill-eval quickstart`)")
    for row in rows:
        info(f"{row['name']:<14} {row['examples'] if row['examples'] is not None else '-':>8} examples  "
             f"{row['coverage']:<28} prepared {row['created']}")
