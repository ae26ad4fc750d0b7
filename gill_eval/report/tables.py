"""Markdown tables in the paper's layouts, built from result files and the published numbers.

Published numbers come from ``paper_tables.json`` (a copy of the project's reference file, with its
source note) and are shown as labelled reference rows. Our rows carry mean ± std over seeds, a dagger
when a cell covers fewer examples than expected, "-" with a numbered reason when a model lacks the
capability, a coverage line (n evaluated / n expected) and a provenance table. "Δ vs baseline" is a
paired bootstrap over the (example, seed) pairs both models have.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from gill_eval.bench import registry
from gill_eval.bench.registry import Layout
from gill_eval.bench.results import load_scores
from gill_eval.metrics.stats import paired_difference

METRIC_TITLES = {"clip_similarity": "CLIP Sim ↑", "lpips": "LPIPS ↓", "R@1": "R@1 ↑", "R@5": "R@5 ↑",
                 "R@10": "R@10 ↑", "fid": "FID ↓", "kid": "KID ↓", "clip_score": "CLIPScore ↑"}
DECIMALS = {"clip_similarity": 4, "lpips": 4, "R@1": 1, "R@5": 1, "R@10": 1, "fid": 2, "kid": 4, "clip_score": 2}
EXTRA = "(extra)"  # the title suffix of a column the paper does not have


def paper_tables() -> dict[str, Any]:
    """The published GILL numbers shipped with the package."""
    return json.loads(resources.files("gill_eval.report").joinpath("paper_tables.json").read_text(encoding="utf-8"))


def layouts() -> list[Layout]:
    """The report tables, one per registered benchmark, in report order (each benchmark declares its own,
    gill_eval/bench/specs/)."""
    return registry.layouts()


def _fmt(value: float | None, decimals: int) -> str:
    return "-" if value is None else f"{value:.{decimals}f}"


def _paper_cell(entry: Any, decimals: int) -> str:
    if entry is None:
        return "-"
    if isinstance(entry, list):
        return f"{entry[0]:.{decimals}f} ± {entry[1]:.4f}"
    return f"{entry:.{decimals}f}"


def _paper_rows(layout: Layout, paper: dict[str, Any]) -> list[tuple[str, list[str]]]:
    data = paper.get(layout.paper_key or "", {})
    rows = []
    for name, entry in data.get("rows", {}).items():
        cells: list[str] = []
        if layout.paper_cells == "per_metric_context":
            for metric in layout.metrics:
                for ctx in layout.contexts:
                    col = layout.paper_columns.get(ctx, ctx)
                    cells.append(_paper_cell(entry.get(metric, {}).get(col), DECIMALS[metric] - 1))
        elif layout.paper_cells == "list":
            cells = [_paper_cell(v, DECIMALS[m]) for v, m in zip(entry, layout.metrics, strict=True)]
        elif layout.paper_cells == "first":
            cells = [_paper_cell(entry[0], DECIMALS[layout.metrics[0]])]
        else:
            cells = [_paper_cell(entry, DECIMALS[layout.metrics[0]])]
        rows.append((f"{name} (paper)", cells))
    return rows


@dataclass
class RenderedTable:
    markdown: str
    data: dict[str, Any]


class Footnotes:
    def __init__(self) -> None:
        self.items: list[str] = []

    def mark(self, text: str) -> str:
        if text not in self.items:
            self.items.append(text)
        return f"[{self.items.index(text) + 1}]"


def _cell(result: dict[str, Any] | None, metric: str, notes: Footnotes) -> tuple[str, dict[str, Any]]:
    if result is None:
        return "", {"status": "not run"}
    if result["status"] == "unsupported":
        return f"- {notes.mark(result['reason'])}", {"status": "unsupported", "reason": result["reason"]}
    m = result["metrics"].get(metric) or {}
    agg = m.get("aggregate")
    if not agg:
        return f"- {notes.mark('no example could be evaluated')}", {"status": "no data", "n_evaluated": 0}
    d = DECIMALS[metric]
    text = _fmt(agg["mean"], d)
    if agg.get("std_over_seeds") is not None:
        text += f" ± {agg['std_over_seeds']:.4f}"
    elif agg.get("subset_std") is not None:  # KID from one seed: the spread over its subsets
        text += f" ± {agg['subset_std']:.4f} {notes.mark('± of a one-seed KID: std over its random subsets (torch-fidelity)')}"
    if m.get("warning"):
        text += f" {notes.mark(m['warning'])}"
    if m["n_evaluated"] < result["n_expected"]:
        text += f" † {notes.mark('† averaged over fewer examples than expected: see the coverage line')}"
    return text, {"status": "ok", "n_evaluated": m["n_evaluated"], "n_expected": result["n_expected"], **agg}


def _delta(base: dict | None, other: dict | None, metric: str) -> tuple[str, dict[str, Any] | None]:
    if not base or not other or base["status"] != "ok" or other["status"] != "ok" or metric == "fid":
        return "", None
    a, b = load_scores(other, metric), load_scores(base, metric)
    if a.empty or b.empty:
        return "", None
    try:
        d = paired_difference(a, b)
    except ValueError:
        return "no shared examples", None
    dec = DECIMALS[metric]
    return f"{d.diff:+.{dec}f} [{d.ci_low:+.{dec}f}, {d.ci_high:+.{dec}f}] (n {d.n_pairs})", d.as_dict()


def render_table(layout: Layout, results: list[dict[str, Any]], baseline: str | None, paper: dict[str, Any]) -> RenderedTable | None:
    """One paper table; None when no result feeds it."""
    if layout.render is not None:
        module, _, function = layout.render.partition(":")
        return getattr(importlib.import_module(module), function)(layout, results, baseline, paper)
    mine = [r for r in results if r["benchmark"] == layout.benchmark]
    if not mine:
        return None
    contexts = layout.contexts + sorted({r["context"] for r in mine} - set(layout.contexts))
    labels = sorted({r["model"]["label"] for r in mine}, key=lambda s: (s != baseline, s))
    by_key = {(r["model"]["label"], r["context"]): r for r in mine}
    notes = Footnotes()
    multi_ctx = len(contexts) > 1 or layout.context_titles.get(contexts[0], "")
    shown = layout.metrics + layout.extra_metrics
    columns = [f"{METRIC_TITLES[m]} {layout.context_titles.get(c, c)}".strip() if multi_ctx else METRIC_TITLES[m]
               for m in layout.metrics for c in contexts]
    columns += [f"{METRIC_TITLES[m]} {layout.context_titles.get(c, c)} {EXTRA}".replace("  ", " ")
                for m in layout.extra_metrics for c in contexts]
    lines = [f"### {layout.title}", ""]
    if any(r.get("meaningless") for r in mine):
        lines += ["> Rows below were scored with tiny random-weight networks: their numbers are meaningless.", ""]
    lines += ["| Model | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name, cells in _paper_rows(layout, paper):
        cells = cells + [""] * (len(columns) - len(cells))  # extra contexts and metrics were not published
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    data_rows = []
    for label in labels:
        cells, cell_data = [], {}
        for metric in shown:
            for ctx in contexts:
                text, cd = _cell(by_key.get((label, ctx)), metric, notes)
                cells.append(text)
                cell_data[f"{metric}/{ctx}"] = cd
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        data_rows.append({"label": label, "cells": cell_data})
    # coverage line: n evaluated / n expected for every cell of our rows
    cov = []
    for label in labels:
        parts = []
        for ctx in contexts:
            r = by_key.get((label, ctx))
            if r is None:
                continue
            if r["status"] != "ok":
                parts.append(f"{ctx} -")
                continue
            n_eval = min(m["n_evaluated"] for m in r["metrics"].values())
            parts.append(f"{ctx} {n_eval}/{r['n_expected']}" if len(contexts) > 1 else f"{n_eval}/{r['n_expected']}")
        cov.append(f"{label}: " + ", ".join(parts))
    lines += ["", "Coverage (n evaluated / n expected, examples x seeds): " + "; ".join(cov) + "."]
    sets = {(r["data"]["manifest_hash"], r["data"].get("examples_eligible")) for r in mine}
    if len(sets) > 1:
        lines.append("**Warning: these rows were scored on different example sets (different prepared data).**")
    deltas: dict[str, Any] = {}
    if baseline and baseline in labels and len(labels) > 1 and layout.metrics != ["fid"]:
        dcols = [c for c in columns]
        lines += ["", f"Δ vs baseline ({baseline}), paired bootstrap 95% interval over shared (example, seed) pairs:", "",
                  "| Model | " + " | ".join(dcols) + " |", "|---|" + "---|" * len(dcols)]
        for label in labels:
            if label == baseline:
                continue
            cells = []
            for metric in layout.metrics:
                for ctx in contexts:
                    text, d = _delta(by_key.get((baseline, ctx)), by_key.get((label, ctx)), metric)
                    cells.append(text)
                    deltas[f"{label}/{metric}/{ctx}"] = d
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if notes.items:
        lines += [""] + [f"{i + 1}. {text}" for i, text in enumerate(notes.items)]
    lines += [""] + [f"_{n}_" for n in layout.notes]
    if layout.notes:
        lines.append("")
    return RenderedTable("\n".join(lines), {"table": layout.key, "title": layout.title, "columns": columns,
                                            "rows": data_rows, "deltas": deltas, "footnotes": notes.items,
                                            "paper_rows": [{"label": n, "cells": c} for n, c in _paper_rows(layout, paper)]})


def provenance_rows(results: list[dict[str, Any]]) -> list[str]:
    """One Markdown table row per result: what produced it."""
    lines = ["| Benchmark | Context | Model | Fingerprint | Data | Scorers | Seeds | Protocol |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (r["benchmark"], r["model"]["label"], r["context"])):
        proto = r.get("protocol", {})
        proto_text = ", ".join(f"{k}={v}" for k, v in sorted(proto.items()) if k in ("reference", "ties", "num", "rounds", "limit"))
        lines.append(f"| {r['benchmark']} | {r['context']} | {r['model']['label']} | `{r['model']['fingerprint_hash']}` "
                     f"| `{r['data']['manifest_hash'][:12]}` | {r['scorers'].get('preset', '?')} | "
                     f"{','.join(map(str, r['seeds']))} | {proto_text or '-'} |")
    return lines
