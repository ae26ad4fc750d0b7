"""The self-contained annotation page: one HTML file that works from ``file://`` (no server, no network).

The items (id, prompt, slot images; never the A/B order or gold answers) are embedded as JSON; images are
the kit's slot files, referenced relative to the page. One item at a time, the two questions of the
paper's Figure 9, keys 1/2/3 (relevance: A, B, same) and 4/5/6 (realism), ``u`` to undo; votes are kept in
``localStorage`` across reloads and exported as JSON (read back by ``read_page_export``).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from gill_eval.annotate.items import QUESTIONS, Kit
from gill_eval.annotate.votes import Vote, check_answer, check_votes
from gill_eval.errors import InputError
from gill_eval.store import atomic_write_text

PAGE_FILE = "annotate.html"
EXPORT_FORMAT = "gill-eval-annotate-page/1"

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222}
#prompt{font-size:1.3em;margin:.6em 0 1em}
.pair{display:flex;gap:1.5em}.pair figure{flex:1;margin:0;text-align:center}
.pair img{max-width:100%;max-height:420px;border:1px solid #ccc}
fieldset{margin:.8em 0;border:1px solid #ddd}label{margin-right:1.5em;cursor:pointer}
kbd{border:1px solid #aaa;border-radius:3px;padding:0 .3em;font-size:.85em}
#done{display:none;font-size:1.2em}.muted{color:#777}
</style></head><body>
<h1>__TITLE__</h1>
<p>Your name or annotator id: <input id="annotator" autocomplete="off"> <span id="progress" class="muted"></span></p>
<div id="task">
<div id="prompt"></div>
<div class="pair"><figure><img id="img-a" alt="image A"><figcaption>Image A</figcaption></figure>
<figure><img id="img-b" alt="image B"><figcaption>Image B</figcaption></figure></div>
<fieldset><legend>__Q_RELEVANCE__ <span class="muted">(keys <kbd>1</kbd> <kbd>2</kbd> <kbd>3</kbd>)</span></legend>
<label><input type="radio" name="relevance" value="A"> Image A</label>
<label><input type="radio" name="relevance" value="B"> Image B</label>
<label><input type="radio" name="relevance" value="same"> About the same</label></fieldset>
<fieldset><legend>__Q_REALISM__ <span class="muted">(keys <kbd>4</kbd> <kbd>5</kbd> <kbd>6</kbd>)</span></legend>
<label><input type="radio" name="realism" value="A"> Image A</label>
<label><input type="radio" name="realism" value="B"> Image B</label>
<label><input type="radio" name="realism" value="same"> About the same</label></fieldset>
</div>
<p id="done">All items answered, thank you. Export your votes and send the file back.</p>
<p><button id="undo">Undo (<kbd>u</kbd>)</button> <button id="export">Export votes (JSON)</button>
<span id="message" class="muted"></span></p>
<script type="application/json" id="kit">__KIT__</script>
<script>
"use strict";
const KIT = JSON.parse(document.getElementById("kit").textContent);
const STORE = "gill-eval-annotate:" + KIT.kit_id;
const KEYS = {"1": ["relevance", "A"], "2": ["relevance", "B"], "3": ["relevance", "same"],
              "4": ["realism", "A"], "5": ["realism", "B"], "6": ["realism", "same"]};
let state = load();
function load() {
  try { const s = JSON.parse(localStorage.getItem(STORE)); if (s && Array.isArray(s.votes)) return s; }
  catch (e) { /* a damaged entry starts afresh */ }
  return {annotator: "", votes: []};
}
function save() { localStorage.setItem(STORE, JSON.stringify(state)); }
function current() { return state.votes.length < KIT.items.length ? KIT.items[state.votes.length] : null; }
function picked(name) { const el = document.querySelector('input[name="' + name + '"]:checked'); return el ? el.value : null; }
function render() {
  document.getElementById("annotator").value = state.annotator;
  document.getElementById("progress").textContent = state.votes.length + " / " + KIT.items.length + " answered";
  document.querySelectorAll("input[type=radio]").forEach(r => { r.checked = false; });
  const item = current();
  document.getElementById("task").style.display = item ? "" : "none";
  document.getElementById("done").style.display = item ? "none" : "block";
  if (!item) return;
  document.getElementById("prompt").textContent = item.prompt;
  document.getElementById("img-a").src = item.image_a;
  document.getElementById("img-b").src = item.image_b;
}
function say(text) { document.getElementById("message").textContent = text; }
function answer(question, value) {
  const item = current();
  if (!item) return;
  if (!state.annotator) { say("Enter your annotator id first."); document.getElementById("annotator").focus(); return; }
  document.querySelector('input[name="' + question + '"][value="' + value + '"]').checked = true;
  const relevance = picked("relevance"), realism = picked("realism");
  if (relevance && realism) {
    state.votes.push({item: item.id, relevance: relevance, realism: realism, at: new Date().toISOString()});
    save(); say(""); render();
  }
}
function undo() { if (state.votes.length) { state.votes.pop(); save(); render(); say("Last answer undone."); } }
function exportVotes() {
  const data = {format: KIT.format, kit_id: KIT.kit_id, annotator: state.annotator, votes: state.votes};
  const blob = new Blob([JSON.stringify(data, null, 1)], {type: "application/json"});
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = "votes-" + (state.annotator || "anonymous").replace(/[^A-Za-z0-9_-]/g, "_") + ".json";
  document.body.appendChild(link); link.click(); link.remove();
}
document.getElementById("annotator").addEventListener("input", e => { state.annotator = e.target.value.trim(); save(); });
document.querySelectorAll("input[type=radio]").forEach(r => r.addEventListener("change", () => answer(r.name, r.value)));
document.getElementById("undo").addEventListener("click", undo);
document.getElementById("export").addEventListener("click", exportVotes);
document.addEventListener("keydown", e => {
  if (e.target.id === "annotator" || e.ctrlKey || e.metaKey || e.altKey) return;
  if (KEYS[e.key]) { answer(KEYS[e.key][0], KEYS[e.key][1]); e.preventDefault(); }
  else if (e.key === "u") { undo(); e.preventDefault(); }
});
render();
</script></body></html>
"""


def render_page(kit: Kit, title: str = "Which image fits the caption?") -> str:
    """The page's HTML for ``kit``."""
    data = {"format": EXPORT_FORMAT, "kit_id": kit.meta["kit_id"], "items": kit.public_items()}
    embedded = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    return (_TEMPLATE.replace("__TITLE__", html.escape(title))
            .replace("__Q_RELEVANCE__", html.escape(QUESTIONS["relevance"]))
            .replace("__Q_REALISM__", html.escape(QUESTIONS["realism"]))
            .replace("__KIT__", embedded))


def write_page(kit: Kit) -> Path:
    """Write ``annotate.html`` into the kit folder (beside ``images/``)."""
    path = kit.folder / PAGE_FILE
    atomic_write_text(path, render_page(kit))
    return path


def read_page_export(path: Path, kit: Kit) -> list[Vote]:
    """The votes of one exported page file, checked against the kit."""
    try:
        data: Any = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a page export ({exc}); export it again from the page") from exc
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise InputError(f"{path}: not a page export (format should be {EXPORT_FORMAT!r})")
    if data.get("kit_id") != kit.meta["kit_id"]:
        raise InputError(f"{path}: exported from kit {data.get('kit_id')!r}, not {kit.meta['kit_id']!r} ({kit.folder})")
    annotator = str(data.get("annotator") or "").strip()
    if not annotator:
        raise InputError(f"{path}: no annotator id (the page's first field)")
    if not isinstance(data.get("votes"), list):
        raise InputError(f"{path}: key 'votes' should be a list")
    votes = []
    for n, raw in enumerate(data["votes"]):
        origin = f"{path}: votes[{n}]"
        if not isinstance(raw, dict) or "item" not in raw:
            raise InputError(f"{origin}: expected an object with item, relevance, realism")
        votes.append(Vote(str(raw["item"]), annotator, check_answer(raw.get("relevance"), "relevance", origin),
                          check_answer(raw.get("realism"), "realism", origin), origin))
    return check_votes(votes, kit)
