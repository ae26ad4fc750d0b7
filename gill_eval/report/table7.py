"""Table 7 in the paper's layout: one row per model, COCO 2017 BLEU-4 and METEOR, then VQAv2 accuracy.

The paper prints all three as fractions (0.1059, 0.2529, 0.3178); gill-eval's VQA accuracy is in % per
question, so it is divided by 100 here. Columns the paper does not have (BLEU-1..3, CIDEr, VQA accuracy per
answer type) follow as "(extra)". Two benchmarks feed the table (``coco-caption`` and ``vqav2``), so the
``coco-caption`` layout renders it and the ``vqav2`` layout renders nothing.
"""

from __future__ import annotations

from typing import Any

from gill_eval.bench.registry import Layout
from gill_eval.report.tables import EXTRA, Footnotes, RenderedTable

CAPTION, VQA = "coco-caption", "vqav2"
#: (title, benchmark, metric, scale): the paper's columns, then the extra ones.
PAPER_COLUMNS = [("COCO BLEU-4 ↑", CAPTION, "bleu4", 1.0), ("COCO METEOR ↑", CAPTION, "meteor", 1.0),
                 ("VQAv2 ↑", VQA, "vqa_accuracy", 0.01)]
EXTRA_COLUMNS = [("BLEU-1", CAPTION, "bleu1", 1.0), ("BLEU-2", CAPTION, "bleu2", 1.0), ("BLEU-3", CAPTION, "bleu3", 1.0),
                 ("CIDEr", CAPTION, "cider", 1.0), ("VQA yes/no", VQA, "vqa_yes/no", 0.01),
                 ("VQA number", VQA, "vqa_number", 0.01), ("VQA other", VQA, "vqa_other", 0.01)]
DECIMALS = 4


def render_nothing(layout: Layout, results: list[dict[str, Any]], baseline: str | None,
                   paper: dict[str, Any]) -> None:
    """The ``vqav2`` layout: its column is part of the table ``coco-caption`` renders."""
    return None


def _cell(result: dict[str, Any] | None, metric: str, scale: float, notes: Footnotes) -> str:
    if result is None:
        return ""
    if result["status"] == "unsupported":
        return f"- {notes.mark(result['reason'])}"
    entry = result["metrics"].get(metric)
    if not entry or not entry.get("aggregate"):
        return "-"
    agg = entry["aggregate"]
    text = f"{agg['mean'] * scale:.{DECIMALS}f}"
    if agg.get("std_over_seeds") is not None:
        text += f" ± {agg['std_over_seeds'] * scale:.{DECIMALS}f}"
    if entry["n_evaluated"] < entry.get("n_expected", result["n_expected"]):
        text += f" † {notes.mark('† averaged over fewer examples than expected: see the coverage line')}"
    return text


def render_table7(layout: Layout, results: list[dict[str, Any]], baseline: str | None,
                  paper: dict[str, Any]) -> RenderedTable | None:
    """The whole of Table 7; None when neither benchmark has a result."""
    mine = [r for r in results if r["benchmark"] in (CAPTION, VQA)]
    if not mine:
        return None
    by_key = {(r["model"]["label"], r["benchmark"]): r for r in mine}
    labels = sorted({r["model"]["label"] for r in mine}, key=lambda s: (s != baseline, s))
    notes = Footnotes()
    titles = [t for t, *_ in PAPER_COLUMNS] + [f"{t} {EXTRA}" for t, *_ in EXTRA_COLUMNS]
    lines = [f"### {layout.title}", ""]
    if any(r.get("meaningless") for r in mine) or any(r["model"]["name"].startswith("tiny") for r in mine):
        lines += ["> Rows of tiny random-weight models (or tiny scorers) are meaningless.", ""]
    lines += ["| Model | " + " | ".join(titles) + " |", "|---|" + "---|" * len(titles)]
    published = paper.get(layout.paper_key or "", {})
    for name, values in published.get("rows", {}).items():
        cells = ["-" if v is None else f"{v:.{DECIMALS}f}" for v in values] + [""] * len(EXTRA_COLUMNS)
        lines.append(f"| {name} (paper) | " + " | ".join(cells) + " |")
    rows = []
    for label in labels:
        cells, data = [], {}
        for title, bench, metric, scale in PAPER_COLUMNS + EXTRA_COLUMNS:
            result = by_key.get((label, bench))
            cells.append(_cell(result, metric, scale, notes))
            entry = (result or {}).get("metrics", {}).get(metric) or {}
            data[f"{bench}/{metric}"] = {**(entry.get("aggregate") or {}), "scale": scale} if entry else None
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        rows.append({"label": label, "cells": data})
    coverage = []
    for label in labels:
        parts = []
        for bench in (CAPTION, VQA):
            r = by_key.get((label, bench))
            if r is not None and r["status"] == "ok":
                first = next(metric for _, b, metric, _ in PAPER_COLUMNS if b == bench)
                parts.append(f"{bench} {r['metrics'][first]['n_evaluated']}/{r['n_expected']}")
        coverage.append(f"{label}: " + (", ".join(parts) or "-"))
    lines += ["", "Coverage (n evaluated / n expected, examples x seeds): " + "; ".join(coverage) + "."]
    lines += ["", "_BLEU and METEOR are corpus-level (pycocoevalcap); VQAv2 is the official accuracy as a fraction. "
                  "The prompts are gill-eval's stated choices (docs/protocols.md, Table 7)._"]
    if notes.items:
        lines += [""] + [f"{i + 1}. {text}" for i, text in enumerate(notes.items)]
    return RenderedTable("\n".join(lines), {"table": layout.key, "title": layout.title, "columns": titles,
                                            "rows": rows, "deltas": {}, "footnotes": notes.items,
                                            "paper_rows": published.get("rows", {})})
