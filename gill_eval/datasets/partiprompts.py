"""PartiPrompts and the GILL retrieve-vs-generate annotations, read into one table.

Four tab-separated files with the same 1,632 prompt rows in the same order (byte-identical copies
ship in ``gill_eval/sample/files/partiprompts/``). They use **no CSV quoting**: 22 prompts contain ``"`` and one
starts with it, so Python's csv module or pandas' default reader would silently strip those quotes.
Every line is therefore split on tabs by hand.

The confident label is recomputed from the Alignment votes with the published rule and checked against
the shipped Confident file row by row, so a changed rule or a corrupted file cannot slip through. The
published split takes the usable (non-``same``) rows in file order: the first 600 train, the rest val.
"""

from __future__ import annotations

import json
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

import gill_eval
from gill_eval.datasets.sources import download
from gill_eval.errors import InputError
from gill_eval.store import sha256_file

PROMPTS = "PartiPrompts.tsv"
ALIGNMENT = "PartiPromptsAllDecisions_Alignment.tsv"
REALISM = "PartiPromptsAllDecisions_Realism.tsv"
CONFIDENT = "PartiPromptsDecisionsConfident.tsv"
FILE_NAMES = (PROMPTS, ALIGNMENT, REALISM, CONFIDENT)

BASE_COLUMNS = ["Prompt", "Category", "Challenge", "Note"]
VOTES = ("ret", "gen", "same")
LABELS = ("gen", "ret")  # index 0 = gen, 1 = ret, as in GILL's decision model
TRAIN_SIZE = 600

SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("row", pa.int32()),
        ("prompt", pa.string()),
        ("category", pa.string()),
        ("challenge", pa.string()),
        ("note", pa.string()),
        ("alignment_votes", pa.list_(pa.string())),
        ("realism_votes", pa.list_(pa.string())),
        ("decision", pa.string()),
        ("split", pa.string()),
        ("realism_decision", pa.string()),
        ("realism_split", pa.string()),
    ]
)


def confident_decision(votes: list[str]) -> str:
    """The published agreement rule: ``gen``/``ret`` when the majority is clear, else ``same``.

    A label is kept when it has at least 4 votes, or exactly 3 while the other label has at most 1;
    anything else (including a plurality of ``same``) is ``same``, i.e. excluded from training and scoring.
    """
    counts = Counter(votes)
    for label, other in (("gen", "ret"), ("ret", "gen")):
        if counts[label] >= 4 or (counts[label] == 3 and counts[other] <= 1):
            return label
    return "same"


def published_split(decisions: list[str], train_size: int = TRAIN_SIZE) -> list[str | None]:
    """``train`` for the first ``train_size`` usable rows in file order, ``val`` for the rest, None for ``same``."""
    out: list[str | None] = []
    usable = 0
    for decision in decisions:
        if decision == "same":
            out.append(None)
            continue
        out.append("train" if usable < train_size else "val")
        usable += 1
    return out


# ---------------------------------------------------------------------------------------------- reading


def read_tsv(path: Path, columns: list[str]) -> list[list[str]]:
    """Rows of a header-checked, tab-split, unquoted TSV file (header excluded).

    Errors name the file and the 1-based line number. Empty trailing lines are allowed; empty lines in the
    middle are not (they would shift the row alignment between the four files).
    """
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise InputError(f"{path}: line {line}: not UTF-8 ({exc.reason} at byte {exc.start}); save the file as UTF-8") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc
    lines = text.split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise InputError(f"{path}: empty file")
    header = lines[0].rstrip("\r").split("\t")
    if header != columns:
        raise InputError(f"{path}: header {header} does not match the expected columns {columns}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.rstrip("\r").split("\t")
        if len(fields) != len(columns):
            raise InputError(f"{path}: line {number} has {len(fields)} tab-separated fields, expected {len(columns)}")
        rows.append(fields)
    return rows


def parse_votes(text: str, path: Path, line: int) -> list[str]:
    """The comma-separated votes of one row; 4 or 5 votes, each ``ret``, ``gen`` or ``same``."""
    votes = [v.strip() for v in text.split(",")]
    bad = [v for v in votes if v not in VOTES]
    if bad:
        raise InputError(f"{path}: line {line}: unknown vote(s) {bad} (expected ret, gen or same)")
    if not 4 <= len(votes) <= 5:
        raise InputError(f"{path}: line {line}: {len(votes)} votes, expected 4 or 5")
    return votes


def build_table(files: dict[str, Path]) -> pa.Table:
    """The one PartiPrompts table (schema ``SCHEMA``) from the four files; validates alignment and labels."""
    prompts = read_tsv(files[PROMPTS], BASE_COLUMNS)
    alignment = read_tsv(files[ALIGNMENT], BASE_COLUMNS + ["Decisions"])
    realism = read_tsv(files[REALISM], BASE_COLUMNS + ["Decisions"])
    confident = read_tsv(files[CONFIDENT], BASE_COLUMNS + ["Decision"])
    for name, rows in ((ALIGNMENT, alignment), (REALISM, realism), (CONFIDENT, confident)):
        if len(rows) != len(prompts):
            raise InputError(f"{files[name]}: {len(rows)} rows but {PROMPTS} has {len(prompts)}")
        for i, (row, base) in enumerate(zip(rows, prompts)):
            if row[:4] != base:
                raise InputError(
                    f"{files[name]}: line {i + 2} ({row[0]!r}) does not match {PROMPTS} line {i + 2} ({base[0]!r})"
                )

    align_votes = [parse_votes(r[4], files[ALIGNMENT], i + 2) for i, r in enumerate(alignment)]
    real_votes = [parse_votes(r[4], files[REALISM], i + 2) for i, r in enumerate(realism)]
    decisions = [confident_decision(v) for v in align_votes]
    for i, (row, mine) in enumerate(zip(confident, decisions)):
        shipped = row[4].strip()
        if shipped != mine:
            raise InputError(
                f"{files[CONFIDENT]}: line {i + 2} ({row[0]!r}) says {shipped!r}, but the agreement rule on "
                f"the Alignment votes {','.join(align_votes[i])} gives {mine!r}"
            )
    realism_decisions = [confident_decision(v) for v in real_votes]
    return pa.table(
        {
            "key": [f"parti-{i:04d}" for i in range(len(prompts))],
            "row": list(range(len(prompts))),
            "prompt": [r[0] for r in prompts],
            "category": [r[1] for r in prompts],
            "challenge": [r[2] for r in prompts],
            "note": [r[3] for r in prompts],
            "alignment_votes": align_votes,
            "realism_votes": real_votes,
            "decision": decisions,
            "split": published_split(decisions),
            "realism_decision": realism_decisions,
            "realism_split": published_split(realism_decisions),
        },
        schema=SCHEMA,
    )


def table_counts(table: pa.Table) -> dict[str, Any]:
    """Counts per decision and per split (the manifest's ``counts`` and the ``--json`` output)."""
    decisions = table.column("decision").to_pylist()
    splits = table.column("split").to_pylist()
    per_split: dict[str, dict[str, int]] = {}
    for decision, split in zip(decisions, splits):
        if split is not None:
            per_split.setdefault(split, {"gen": 0, "ret": 0})[decision] += 1
    counts = Counter(decisions)
    return {
        "rows": table.num_rows,
        "decisions": {label: counts.get(label, 0) for label in VOTES},
        "usable": counts.get("gen", 0) + counts.get("ret", 0),
        "splits": per_split,
        "realism_decisions": dict(sorted(Counter(table.column("realism_decision").to_pylist()).items())),
        "prompts_with_double_quote": sum('"' in p for p in table.column("prompt").to_pylist()),
    }


# ---------------------------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class PinnedFile:
    """One source file: its name, pinned download address and sha256."""

    name: str
    url: str
    sha256: str


def pinned_files_path() -> Path:
    """The pinned addresses: ``annotations/partiprompts.json``, shipped as package data through a symlink."""
    return Path(gill_eval.__file__).parent / "annotations" / "partiprompts.json"


def pinned_files() -> dict[str, PinnedFile]:
    """The four pinned files by name."""
    path = pinned_files_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = {e["name"]: PinnedFile(e["name"], e["url"], e["sha256"]) for e in data["files"]}
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: cannot read the pinned PartiPrompts sources ({exc})") from exc
    missing = [n for n in FILE_NAMES if n not in entries]
    if missing:
        raise InputError(f"{path}: no entry for {', '.join(missing)}")
    return entries


def _is_url(source: str) -> bool:
    return urllib.parse.urlparse(source).scheme in ("http", "https")


def resolve_sources(source: str | None, download_dir: Path, verify: bool = True) -> dict[str, tuple[Path, str]]:
    """Local paths (and where each came from) of the four files.

    ``source`` is a folder holding the four files, a base URL they sit under, or None for the pinned
    raw addresses. Downloads go to ``download_dir``; a copy already there with the pinned sha256 is reused.
    With ``verify`` every file must have its pinned sha256 (a mismatch is an error naming the file).
    """
    pins = pinned_files()
    resolved: dict[str, tuple[Path, str]] = {}
    for name in FILE_NAMES:
        pin = pins[name]
        if source is None or _is_url(source):
            url = pin.url if source is None else source.rstrip("/") + "/" + urllib.parse.quote(name)
            path = download_dir / name
            if not (path.is_file() and sha256_file(path) == pin.sha256 and source is None):
                download(url, path)  # sources.download: deadline, size limit, atomic
            origin = url
        else:
            path = Path(source) / name
            if not path.is_file():
                raise InputError(f"{path}: missing (the source folder must hold {', '.join(FILE_NAMES)})")
            origin = str(path.resolve())
        if verify:
            digest = sha256_file(path)
            if digest != pin.sha256:
                raise InputError(
                    f"{origin}: sha256 {digest} does not match the pinned {pin.sha256} "
                    "(pass --no-verify to accept modified annotation files)"
                )
        resolved[name] = (path, origin)
    return resolved

