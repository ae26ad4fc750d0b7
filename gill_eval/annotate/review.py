"""``review.html`` in a labels folder: per labelled item the prompt, the generated and the retrieved image (now
named, the A/B order undone), the votes of both questions and the confident label. Images are linked
relative to the kit folder, so the page works from ``file://`` while the kit stays where it was."""

from __future__ import annotations

import html
import os
from pathlib import Path

from gill_eval.annotate.items import Item
from gill_eval.store import atomic_write_text

REVIEW_FILE = "review.html"

_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Collected labels</title>
<style>body{font-family:system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse}
td,th{border:1px solid #ddd;padding:.4em;vertical-align:top}img{max-width:220px;max-height:220px}
.gen{background:#eef6ff}.ret{background:#fff4e5}.same{color:#777}</style></head><body>
<h1>Collected labels</h1>
<table><thead><tr><th>item</th><th>prompt</th><th>generated</th><th>retrieved</th><th>relevance votes</th>
<th>realism votes</th><th>label</th></tr></thead><tbody>
"""


def _src(kit_folder: Path, out: Path, relative: str) -> str:
    return html.escape(Path(os.path.relpath(kit_folder / relative, out)).as_posix(), quote=True)


def write_review(out: Path, kit_folder: Path, rows: list[tuple[Item, list[str], list[str], str]]) -> Path:
    """Write the review page for ``rows`` (item, relevance votes, realism votes, label)."""
    cells = []
    for item, relevance, realism, label in rows:
        gen = item.image_a if item.a == "gen" else item.image_b
        ret = item.image_b if item.a == "gen" else item.image_a
        cells.append(
            f'<tr data-id="{html.escape(item.id, quote=True)}" class="{label}"><td>{html.escape(item.id)}</td>'
            f"<td>{html.escape(item.prompt)}</td>"
            f'<td><img loading="lazy" alt="generated" src="{_src(kit_folder, out, gen)}"></td>'
            f'<td><img loading="lazy" alt="retrieved" src="{_src(kit_folder, out, ret)}"></td>'
            f"<td>{html.escape(', '.join(relevance))}</td><td>{html.escape(', '.join(realism))}</td>"
            f"<td>{label}</td></tr>\n")
    path = out / REVIEW_FILE
    atomic_write_text(path, _HEAD + "".join(cells) + "</tbody></table></body></html>\n")
    return path
