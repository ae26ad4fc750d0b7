"""Where scored results live and what a result file holds.

``<data_root>/results/<benchmark>/<model fingerprint hash>/<context>-<scorer hash>/`` holds
``scores.parquet`` (one row per example x seed x metric: the per-example numbers behind every aggregate)
and ``result.json`` (aggregates, coverage, provenance). ``report`` reads only these files.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from gill_eval.bench.protocol import check_current, stamp
from gill_eval.errors import InputError
from gill_eval.store import atomic_write_json, data_root, write_shard
from gill_eval.store.names import check_name

RESULT_FILE = "result.json"
SCORES_FILE = "scores.parquet"
SCORES_SCHEMA = pa.schema([("example_id", pa.string()), ("seed", pa.int64()), ("metric", pa.string()),
                          ("value", pa.float64()), ("status", pa.string()), ("error_message", pa.string())])


def results_root() -> Path:
    return data_root() / "results"


def short_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def result_dir(benchmark: str, fingerprint_hash: str, context: str, scorer: dict[str, Any]) -> Path:
    context = check_name("context", context, f"benchmark {benchmark}")
    folder = results_root() / check_name("benchmark", benchmark, "benchmark registry") / fingerprint_hash
    return folder / f"{context}-{short_hash(scorer)}"


def write_result(folder: Path, result: dict[str, Any], scores: pd.DataFrame | None) -> Path:
    """Scores first, then result.json (the file report looks for), each atomically; the result records
    its benchmark's protocol version (docs/protocols.md)."""
    stamp(result)
    if scores is not None:
        table = pa.Table.from_pandas(scores.reset_index(drop=True), schema=SCORES_SCHEMA, preserve_index=False)
        write_shard(table, folder / SCORES_FILE)
    atomic_write_json(folder / RESULT_FILE, result)
    return folder / RESULT_FILE


def load_results(root: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Every result under ``root`` (default: the results root), each with ``_dir`` set to its folder.

    A result computed under an earlier protocol of its benchmark is refused with the command that
    recomputes it, never mixed into a table."""
    base = Path(root) if root is not None else results_root()
    found = []
    for path in sorted(base.rglob(RESULT_FILE)):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: malformed result file ({exc})") from exc
        check_current(result, str(path))
        result["_dir"] = str(path.parent)
        found.append(result)
    return found


def load_scores(result: dict[str, Any], metric: str) -> pd.DataFrame:
    """Per-example rows (example_id, seed, value) of one metric of a loaded result, evaluated rows only."""
    path = Path(result["_dir"]) / SCORES_FILE
    if not path.is_file():
        return pd.DataFrame(columns=["example_id", "seed", "value"])
    df = pd.read_parquet(path)
    df = df[(df["metric"] == metric) & (df["status"] == "success")]
    return df[["example_id", "seed", "value"]].reset_index(drop=True)
