"""`gill-eval report`: render the paper tables from result files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gill_eval.bench.results import load_results, results_root
from gill_eval.console import emit_json, info
from gill_eval.errors import InputError
from gill_eval.report.render import render_report
from gill_eval.store import atomic_write_text


def report(
    results: Annotated[Optional[Path], typer.Option("--results", help="Results folder (default: <data>/results).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the Markdown here (default: print it).")] = None,
    baseline: Annotated[Optional[str], typer.Option("--baseline", help="Row label that Δ columns compare against.")] = None,
    plots: Annotated[Optional[Path], typer.Option("--plots", help="Folder for PNG plots (default: beside --out).")] = None,
    title: Annotated[str, typer.Option("--title")] = "gill-eval report",
    html: Annotated[
        Optional[Path], typer.Option("--html", help="Also write the image gallery (a static site) into this folder.")
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Render Markdown tables in the paper's layouts (Tables 1, 2, 3/4, 5, 8) with the published numbers."""
    folder = results or results_root()
    found = load_results(folder)
    if not found:
        raise InputError(f"{folder}: no result.json files; run a `gill-eval bench` command first")
    plots_dir = plots if plots is not None else (out.parent if out is not None else None)
    links = None
    if html is not None:
        from gill_eval.report.html import write_gallery

        gallery = write_gallery(found, folder, html, title=title)
        links = gallery.links(out.parent if out is not None else Path.cwd())
    markdown, data = render_report(found, title=title, baseline=baseline, plots_dir=plots_dir, gallery_links=links)
    if html is not None:
        data["gallery"] = str(gallery.index)
    if out is not None:
        atomic_write_text(out, markdown)
        info(f"report written to {out}")
    if json:
        emit_json(data)
    elif out is None:
        typer.echo(markdown)
