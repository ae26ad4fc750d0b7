"""A whole report: the paper tables that have results, provenance, and the plots, as Markdown and JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gill_eval.report.plots import plot_context_curves
from gill_eval.bench.registry import benchmarks
from gill_eval.report.tables import layouts, paper_tables, provenance_rows, render_table


def latest_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One result per (benchmark, label, context, scorer preset, --limit): the most recent run."""
    best: dict[tuple, dict[str, Any]] = {}
    for r in results:
        key = (r["benchmark"], r["model"]["label"], r["context"], r["scorers"].get("preset"), r.get("limit") or 0)
        if key not in best or r.get("run", {}).get("time", "") >= best[key].get("run", {}).get("time", ""):
            best[key] = r
    return list(best.values())


def render_report(
    results: list[dict[str, Any]],
    title: str = "gill-eval report",
    baseline: str | None = None,
    preamble: list[str] | None = None,
    plots_dir: Path | None = None,
    gallery_links: dict[tuple[str, int], list[tuple[str, str]]] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Markdown text and the same content as JSON; ``gallery_links`` (see ``html.Gallery.links``) adds page links.

    Partial runs (``--limit N``) get their own section per N, never rows in the full tables."""
    results = latest_results(results)
    full = [r for r in results if not r.get("limit")]
    paper = paper_tables()
    lines = [f"# {title}", ""]
    lines += (preamble or []) + ([""] if preamble else [])
    lines += [f"Published numbers: {paper['source']}", ""]
    data: dict[str, Any] = {"title": title, "baseline": baseline, "tables": [], "plots": [], "partial_tables": []}
    for limit in [0, *sorted({r["limit"] for r in results if r.get("limit")})]:
        section = [r for r in results if (r.get("limit") or 0) == limit]
        if limit:
            lines += [f"## Partial runs: first {limit} examples (--limit {limit})", "",
                      "> Not comparable with the paper or with full runs; shown apart from them.", ""]
        for layout in layouts():
            table = render_table(layout, section, baseline, paper if not limit else {})
            if table is not None:
                lines += [table.markdown, ""]
                links = (gallery_links or {}).get((layout.benchmark, limit))
                if links:
                    lines += ["Gallery: " + " · ".join(f"[{name}]({path})" for name, path in links), ""]
                data["partial_tables" if limit else "tables"].append({**table.data, "limit": limit or None})
    if plots_dir is not None:
        for spec, metric in ((spec, metric) for spec in benchmarks() if spec.plot for metric in spec.metrics):
            benchmark = spec.name
            png = plot_context_curves(full, benchmark, metric, Path(plots_dir) / f"{benchmark}_{metric}.png", spec.plot)
            if png is not None:
                data["plots"].append(str(png))
                lines += [f"![{benchmark} {metric}]({png.name if png.parent == Path(plots_dir) else png})", ""]
    lines += ["### Provenance", ""] + provenance_rows(results) + [""]
    runs = sorted({(r["run"]["gill_eval_version"], r["run"].get("git_hash") or "no git") for r in results if "run" in r})
    lines += ["- Run: " + "; ".join(f"gill-eval {v} ({g[:10]})" for v, g in runs), ""]
    data["results"] = [{k: v for k, v in r.items() if k != "_dir"} for r in results]
    return "\n".join(lines).rstrip() + "\n", data


def render(results: Path | list[dict[str, Any]] | None = None, *, out: Path | None = None, baseline: str | None = None,
           title: str = "gill-eval report") -> tuple[str, dict[str, Any]]:
    """The report of ``results`` (a results folder, default the data root's, or loaded result dicts) as
    Markdown and JSON, as ``gill-eval report`` renders it; with ``out``, also written there with its plots."""
    from gill_eval.bench.results import load_results
    from gill_eval.errors import InputError
    from gill_eval.store import atomic_write_text

    found = results if isinstance(results, list) else load_results(results)
    if not found:
        raise InputError(f"{results or 'the results root'}: no result.json files; run a `gill-eval bench` command first")
    markdown, data = render_report(found, title=title, baseline=baseline,
                                   plots_dir=Path(out).parent if out is not None else None)
    if out is not None:
        atomic_write_text(Path(out), markdown)
    return markdown, data
