"""Reading a collected folder (``annotate collect --out``) back as keyed votes, for the decision classifier."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from gill_eval.datasets.partiprompts import BASE_COLUMNS, read_tsv
from gill_eval.errors import InputError
from gill_eval.store import sha256_file

@dataclass(frozen=True)
class CollectedVotes:
    """The item keys of a collected folder's rows and one kind's votes, with the file's sha256."""

    keys: list[str]
    votes: list[list[str]]
    source_sha256: dict[str, str]


def read_collected(folder: str | Path, annotations: str = "alignment") -> CollectedVotes:
    """Keys (from ``collect.json``) and votes (from ``*AllDecisions_<Kind>.tsv``) of ``folder``."""
    folder = Path(folder)
    summary_path = folder / "collect.json"
    if not summary_path.is_file():
        raise InputError(f"{folder}: no collect.json; run `gill-eval annotate collect VOTES... --out {folder}` first")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        keys, names = list(summary["keys"]), summary["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{summary_path}: not written by `annotate collect` ({exc})") from exc
    path = folder / names[annotations]
    rows = read_tsv(path, BASE_COLUMNS + ["Decisions"])
    if len(rows) != len(keys):
        raise InputError(f"{path}: {len(rows)} rows but {summary_path} lists {len(keys)} keys; run collect again")
    votes = [[v.strip() for v in row[4].split(",")] for row in rows]
    return CollectedVotes(keys, votes, {path.name: sha256_file(path)})
