"""Crowd platforms (the paper used Mechanical Turk): the input CSV, the HIT layout, the batch results CSV.

The input CSV has one row per item (``item``, ``prompt``, ``image_a_url``, ``image_b_url``); the layout
refers to them as ``${...}`` and posts ``relevance`` and ``realism``. The results CSV comes back with
``Input.*``, ``Answer.*`` and ``WorkerId`` columns; rejected assignments are not votes.
"""

from __future__ import annotations

import csv
import html
import io
from pathlib import Path

from gill_eval.annotate.items import CHOICES, QUESTIONS, Kit
from gill_eval.annotate.votes import Vote, check_answer, check_votes
from gill_eval.errors import ConfigError, InputError
from gill_eval.store import atomic_write_text

INPUT_FILE = "crowd-input.csv"
LAYOUT_FILE = "crowd-layout.html"
INPUT_COLUMNS = ("item", "prompt", "image_a_url", "image_b_url")
_LABELS = {"A": "Image A", "B": "Image B", "same": "About the same"}


def input_csv(kit: Kit, image_base: str) -> str:
    """The batch input CSV; images must be reachable by workers, under ``image_base``."""
    if not image_base.startswith(("https://", "http://")):
        raise ConfigError(f"--image-base {image_base!r}: crowd workers need an http(s) address where the kit's "
                          "images/ folder is served")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(INPUT_COLUMNS)
    base = image_base.rstrip("/")
    for item in kit.public_items():
        writer.writerow([item["id"], item["prompt"], f"{base}/{item['image_a']}", f"{base}/{item['image_b']}"])
    return buf.getvalue()


def layout_html() -> str:
    """The HIT layout (Mechanical Turk's crowd-form; the same fields work on other platforms' templates)."""
    questions = "".join(
        f"<p><b>{html.escape(text)}</b></p>\n"
        + "".join(f'<label><input type="radio" name="{name}" value="{c}" required> {_LABELS[c]}</label>\n'
                  for c in CHOICES)
        for name, text in QUESTIONS.items()
    )
    return ('<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>\n<crowd-form>\n'
            '<input type="hidden" name="item" value="${item}">\n<p style="font-size:1.3em">${prompt}</p>\n'
            '<div style="display:flex;gap:1em"><figure><img src="${image_a_url}" style="max-width:400px">'
            '<figcaption>Image A</figcaption></figure>\n<figure><img src="${image_b_url}" style="max-width:400px">'
            f'<figcaption>Image B</figcaption></figure></div>\n{questions}</crowd-form>\n')


def write_crowd(kit: Kit, out: Path, image_base: str) -> list[Path]:
    """Write the input CSV and the layout into ``out``."""
    atomic_write_text(out / INPUT_FILE, input_csv(kit, image_base))
    atomic_write_text(out / LAYOUT_FILE, layout_html())
    return [out / INPUT_FILE, out / LAYOUT_FILE]


def read_crowd_results(path: Path, kit: Kit) -> list[Vote]:
    """The votes in a batch results CSV (``Input.item``, ``Answer.relevance``, ``Answer.realism``, ``WorkerId``)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the results CSV ({exc})") from exc
    except csv.Error as exc:
        raise InputError(f"{path}: not a complete CSV ({exc}); download the batch results again") from exc
    if not rows:
        raise InputError(f"{path}: empty results CSV")
    header = rows[0]
    needed = ["Input.item", "Answer.relevance", "Answer.realism", "WorkerId"]
    missing = [c for c in needed if c not in header]
    if missing:
        raise InputError(f"{path}: no column(s) {', '.join(missing)} (is this the batch results CSV of this kit's layout?)")
    col = {name: header.index(name) for name in [*needed, "AssignmentStatus"] if name in header}
    votes = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        origin = f"{path}: line {line}"
        if len(row) != len(header):
            raise InputError(f"{origin}: {len(row)} fields, the header has {len(header)} (a truncated download?)")
        if "AssignmentStatus" in col and row[col["AssignmentStatus"]] == "Rejected":
            continue
        votes.append(Vote(row[col["Input.item"]], row[col["WorkerId"]].strip(),
                          check_answer(row[col["Answer.relevance"]], "relevance", origin),
                          check_answer(row[col["Answer.realism"]], "realism", origin), origin))
    return check_votes(votes, kit)
