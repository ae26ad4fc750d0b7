"""The generated images behind a scored result, read back from its generation folder.

A similarity or FID result records the folder its images came from (``generation.dir``) and its seeds;
the gallery and ``export images`` read the PNG bytes from there, in (seed, example id) order, keeping
failed rows (no image, an error message) so that coverage stays visible.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gill_eval.bench.registry import FID, SIMILARITY, find
from gill_eval.errors import InputError
from gill_eval.store import iter_rows, list_shards

GENERATION_KINDS = (SIMILARITY, FID)  # benchmark kinds whose rows are generated images
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class GeneratedRow:
    example_id: str
    seed: int
    status: str
    error_message: str
    png: bytes | None


def safe_name(text: str) -> str:
    """A file-name-safe form of ``text`` (ids and labels may hold '/', spaces or unicode)."""
    cleaned = _UNSAFE.sub("_", str(text)).strip("._") or "_"
    return cleaned


def is_generation_result(result: dict[str, Any]) -> bool:
    """A scored result whose rows are generated images."""
    if result.get("status") != "ok" or "generation" not in result:
        return False
    spec = find(str(result.get("benchmark")))
    return spec is not None and spec.kind in GENERATION_KINDS


def iter_generated(result: dict[str, Any], with_images: bool = True) -> Iterator[GeneratedRow]:
    """The generated rows of ``result`` for its seeds, sorted by (seed, example id)."""
    folder = Path(result["generation"]["dir"])
    shards = list_shards(folder)
    if not shards:
        raise InputError(f"{folder}: no generation shards for result {result.get('_dir', '?')}; "
                         "was the generation folder moved or deleted?")
    seeds = set(result["seeds"])
    columns = ["example_id", "seed", "status", "error_message"] + (["image"] if with_images else [])
    rows = [r for r in iter_rows(shards, columns=columns) if r["seed"] in seeds]
    rows.sort(key=lambda r: (r["seed"], r["example_id"]))
    for r in rows:
        yield GeneratedRow(str(r["example_id"]), int(r["seed"]), r["status"], r["error_message"] or "",
                           r.get("image") if r["status"] == "success" else None)
