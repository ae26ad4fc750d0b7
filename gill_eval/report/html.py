"""``report --html DIR``: the gallery as a static site that works from ``file://`` (no network, no CDN).

``DIR/index.html`` links every page; ``DIR/<page>.html`` is a small shell that loads ``data/<page>.js``
(the rows as ``window.GALLERY = {...}``: a script, not a fetch, because browsers refuse fetch on
file://) and the shared ``assets/gallery.js`` / ``gallery.css`` shipped with the package. The script
shows one page of rows at a time (25 by default) with lazily loaded thumbnails, so the browser's work is
bounded by the page size whatever the run's size; a click on a thumbnail opens the full-size image.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from gill_eval.console import info
from gill_eval.report.gallery import Page, build_pages
from gill_eval.report.render import latest_results
from gill_eval.report.thumbnails import ImageFiles
from gill_eval.store import atomic_write_bytes, atomic_write_text

ASSETS = ("gallery.js", "gallery.css")


@dataclass
class Gallery:
    """A written site: its folder and pages."""

    root: Path
    pages: list[Page]
    images_written: int

    @property
    def index(self) -> Path:
        return self.root / "index.html"

    def links(self, relative_to: Path) -> dict[tuple[str, int], list[tuple[str, str]]]:
        """(benchmark, limit or 0) -> [(context, page path relative to ``relative_to``)] for the Markdown report."""
        out: dict[tuple[str, int], list[tuple[str, str]]] = {}
        for page in self.pages:
            rel = os.path.relpath(self.root / f"{page.slug}.html", relative_to)
            out.setdefault((page.benchmark, page.limit), []).append((page.context or page.title, Path(rel).as_posix()))
        return out


def _data_script(data: dict[str, Any]) -> str:
    # A script, not JSON: a non-finite value is written as the JS literal NaN / Infinity (the page shows "-").
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return "window.GALLERY = " + text.replace("</", "<\\/") + ";\n"


def _shell(title: str, body: str, scripts: tuple[str, ...] = ()) -> str:
    tags = "".join(f'<script src="{html.escape(s)}"></script>' for s in scripts)
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><link rel=\"icon\" href=\"data:,\">"
            "<link rel=\"stylesheet\" href=\"assets/gallery.css\"></head>\n<body>\n"
            f"{body}\n{tags}\n</body></html>\n")


def _page_html(page: Page) -> str:
    notes = []
    if page.data.get("meaningless"):
        notes.append("Scored with tiny random-weight networks: the numbers are meaningless.")
    if page.data.get("partial"):
        notes.append("Partial run (--limit): not comparable with full runs.")
    if page.data.get("note"):
        notes.append(str(page.data["note"]))
    pager = ('<div class="pager"><button class="prev" type="button">previous</button> <span class="pageinfo"></span> '
             '<button class="next" type="button">next</button></div>')
    body = (f'<nav><a href="index.html">all pages</a></nav>\n<h1>{html.escape(page.title)}</h1>\n'
            + "".join(f'<p class="note">{html.escape(n)}</p>\n' for n in notes)
            + f'<div id="controls"></div>\n{pager}\n<table id="rows"></table>\n{pager}')
    return _shell(page.title, body, (f"data/{page.slug}.js", "assets/gallery.js"))


def _index_html(pages: list[Page], title: str) -> str:
    items = "".join(f'<li><a href="{html.escape(p.slug)}.html">{html.escape(p.title)}</a> ({len(p.data["rows"])} rows)</li>\n'
                    for p in pages)
    body = (f"<h1>{html.escape(title)}</h1>\n<p>Generated images beside their context, ground truth and per-example "
            "scores. Open this file in a browser; nothing is fetched from the network.</p>\n"
            f"<ul>\n{items}</ul>" if pages else f"<h1>{html.escape(title)}</h1>\n<p>No results with images yet.</p>")
    return _shell(title, body)


def write_gallery(results: list[dict[str, Any]], results_dir: Path, out_dir: Path, title: str = "gill-eval gallery") -> Gallery:
    """Write (or update) the site under ``out_dir``; images already there are reused."""
    out = Path(out_dir)
    files = ImageFiles(out)
    pages = build_pages(latest_results(results), Path(results_dir), files)
    assets = resources.files("gill_eval.report").joinpath("assets")
    for name in ASSETS:
        atomic_write_bytes(out / "assets" / name, assets.joinpath(name).read_bytes())
    for page in pages:
        atomic_write_text(out / "data" / f"{page.slug}.js", _data_script(page.data))
        atomic_write_text(out / f"{page.slug}.html", _page_html(page))
    atomic_write_text(out / "index.html", _index_html(pages, title))
    info(f"gallery: {len(pages)} pages, {files.written} new thumbnails -> {out / 'index.html'}")
    return Gallery(out, pages, files.written)
