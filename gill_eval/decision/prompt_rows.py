"""Per-prompt Table 6 rows, kept for the HTML gallery: prompt, human label, classifier p(ret), decision.

``decision score`` writes them under ``<data root>/results/decision/<features tag>/`` (``prompts.parquet``
and ``decision.json``); ``report --html`` shows them as the Table 6 page. The decision is the paper's
rule at t = 0.5: retrieve when p(ret) > 0.5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from gill_eval.decision.annotations import Labelled, load_prompts
from gill_eval.store import atomic_write_json, data_root, write_shard

PROMPTS_FILE, SUMMARY_FILE = "prompts.parquet", "decision.json"
DECISION_THRESHOLD = 0.5
LABELS = ("gen", "ret")


def decision_rows_dir(tag: str) -> Path:
    return data_root() / "results" / "decision" / tag


def write_prompt_rows(
    folder: Path, data: Labelled, dataset: Path | None, p_ret: np.ndarray | None, heuristic: np.ndarray | None,
    summary: dict[str, Any],
) -> Path:
    """One row per usable prompt (both splits), then the summary; each written atomically."""
    prompts = load_prompts(dataset)
    text = dict(zip(prompts.keys, prompts.prompts, strict=True))
    n = len(data.keys)
    p = p_ret if p_ret is not None else np.full(n, np.nan)
    table = pa.Table.from_pydict({
        "key": list(data.keys), "prompt": [text.get(k, "") for k in data.keys], "split": [str(s) for s in data.splits],
        "label": [LABELS[int(y)] for y in data.labels], "votes": [list(v) for v in data.votes],
        "p_ret": p.astype(np.float64).tolist(),
        "decision": [None if np.isnan(x) else LABELS[int(x > DECISION_THRESHOLD)] for x in p],
        "max_cosine": (heuristic if heuristic is not None else np.full(n, np.nan)).astype(np.float64).tolist(),
    })
    write_shard(table, Path(folder) / PROMPTS_FILE)
    atomic_write_json(Path(folder) / SUMMARY_FILE, {**summary, "threshold": DECISION_THRESHOLD})
    return Path(folder) / PROMPTS_FILE
