"""A whole report: the paper tables that have results, provenance, and the plots, as Markdown and JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gill_eval.report.plots import plot_context_curves
from gill_eval.report.tables import LAYOUTS, paper_tables, provenance_rows, render_table


def latest_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One result per (benchmark, label, context, scorer preset): the most recent run."""
    best: dict[tuple, dict[str, Any]] = {}
    for r in results:
        key = (r["benchmark"], r["model"]["label"], r["context"], r["scorers"].get("preset"))
        if key not in best or r.get("run", {}).get("time", "") >= best[key].get("run", {}).get("time", ""):
            best[key] = r
    return list(best.values())


def render_report(
    results: list[dict[str, Any]],
    title: str = "gill-eval report",
    baseline: str | None = None,
    preamble: list[str] | None = None,
    plots_dir: Path | None = None,
) -> tuple[str, dict[str, Any]]:
    """Markdown text and the same content as JSON."""
    results = latest_results(results)
    paper = paper_tables()
    lines = [f"# {title}", ""]
    lines += (preamble or []) + ([""] if preamble else [])
    lines += [f"Published numbers: {paper['source']}", ""]
    data: dict[str, Any] = {"title": title, "baseline": baseline, "tables": [], "plots": []}
    for layout in LAYOUTS:
        table = render_table(layout, results, baseline, paper)
        if table is not None:
            lines += [table.markdown, ""]
            data["tables"].append(table.data)
    if plots_dir is not None:
        for benchmark, metric in (("vist", "clip_similarity"), ("vist", "lpips"), ("visdial", "clip_similarity"), ("visdial", "lpips")):
            png = plot_context_curves(results, benchmark, metric, Path(plots_dir) / f"{benchmark}_{metric}.png")
            if png is not None:
                data["plots"].append(str(png))
                lines += [f"![{benchmark} {metric}]({png.name if png.parent == Path(plots_dir) else png})", ""]
    lines += ["### Provenance", ""] + provenance_rows(results) + [""]
    runs = sorted({(r["run"]["gill_eval_version"], r["run"].get("git_hash") or "no git") for r in results if "run" in r})
    lines += ["- Run: " + "; ".join(f"gill-eval {v} ({g[:10]})" for v, g in runs), ""]
    data["results"] = [{k: v for k, v in r.items() if k != "_dir"} for r in results]
    return "\n".join(lines).rstrip() + "\n", data
