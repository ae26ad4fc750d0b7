"""``annotate collect``: votes from any path -> the official vote files, confident labels and agreement.

Every import is merged into ``votes.jsonl`` in the output folder: a vote already there with the same
answers is skipped (re-importing an export changes nothing), a different answer by the same annotator on
the same item is an error naming both places, and nothing is written unless every file checks out. The
derived files are then rewritten from ``votes.jsonl``:

* ``<prefix>AllDecisions_Alignment.tsv`` / ``_Realism.tsv``: the official layout (``Prompt``,
  ``Category``, ``Challenge``, ``Note``, ``Decisions``), votes ``gen``/``ret``/``same`` comma-joined in
  annotator order (natural sort of the ids); items without votes and gold items are left out;
* ``<prefix>DecisionsConfident.tsv``: the official agreement rule (docs/annotation.md);
* ``agreement.json`` (statistics), ``collect.json`` (item keys of the rows, counts, provenance) and
  ``review.html`` (per item: prompt, both images, votes, label; ``review``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from gill_eval.annotate import agreement
from gill_eval.annotate.crowd import read_crowd_results
from gill_eval.annotate.items import Item, Kit
from gill_eval.annotate.labelstudio import read_labelstudio_export
from gill_eval.annotate.page import read_page_export
from gill_eval.annotate.review import write_review
from gill_eval.annotate.votes import Vote
from gill_eval.datasets.partiprompts import BASE_COLUMNS, confident_decision
from gill_eval.errors import InputError
from gill_eval.store import atomic_write_json, atomic_write_text

VOTES_FILE = "votes.jsonl"
COLLECT_FILE = "collect.json"
AGREEMENT_FILE = "agreement.json"


def file_names(prefix: str) -> dict[str, str]:
    """The three official file names for ``prefix`` (``PartiPrompts`` gives the published names)."""
    return {"alignment": f"{prefix}AllDecisions_Alignment.tsv", "realism": f"{prefix}AllDecisions_Realism.tsv",
            "confident": f"{prefix}DecisionsConfident.tsv"}


def read_votes_file(path: Path, kit: Kit) -> list[Vote]:
    """The votes of one export: a page export or Label Studio JSON export (``.json``), or crowd results (``.csv``)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return read_crowd_results(path, kit)
    if path.suffix.lower() != ".json":
        raise InputError(f"{path}: unknown export type (expected a page or Label Studio .json, or a crowd results .csv)")
    head = path.read_text(encoding="utf-8", errors="replace").lstrip()[:1]
    return read_labelstudio_export(path, kit) if head == "[" else read_page_export(path, kit)


def _natural(text: str) -> list[Any]:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def read_store(out: Path) -> dict[tuple[str, str], Vote]:
    """The votes already collected in ``out``."""
    path = out / VOTES_FILE
    store: dict[tuple[str, str], Vote] = {}
    if not path.is_file():
        return store
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            vote = Vote(**json.loads(line))
        except (json.JSONDecodeError, TypeError) as exc:
            raise InputError(f"{path}: line {line_no} is not a vote ({exc})") from exc
        store[vote.key] = vote
    return store


def merge(store: dict[tuple[str, str], Vote], votes: list[Vote]) -> int:
    """Add ``votes`` to ``store``; returns how many were new. A changed answer is an error."""
    added = 0
    for vote in votes:
        old = store.get(vote.key)
        if old is None:
            store[vote.key] = vote
            added += 1
        elif old.answers() != vote.answers():
            raise InputError(f"{vote.origin}: {vote.annotator!r} answered item {vote.item!r} {vote.answers()}, but "
                             f"{old.origin} (already collected) says {old.answers()}; remove one of the two")
    return added


def _row(item: Item, votes: list[str]) -> str:
    return "\t".join([*item.base, ",".join(votes)]) + "\n"


def derive(kit: Kit, store: dict[tuple[str, str], Vote]) -> dict[str, Any]:
    """The rows, labels and statistics of everything collected (pure: writes nothing)."""
    by_item: dict[str, list[Vote]] = {}
    for vote in store.values():
        by_item.setdefault(vote.item, []).append(vote)
    rows = []
    gold: dict[str, tuple[int, int]] = {}
    slots: dict[str, dict[str, list[str]]] = {"relevance": {}, "realism": {}}
    for item in kit.items:
        votes = sorted(by_item.get(item.id, []), key=lambda v: _natural(v.annotator))
        for vote in votes:
            slots["relevance"].setdefault(vote.annotator, []).append(vote.relevance)
            slots["realism"].setdefault(vote.annotator, []).append(vote.realism)
        if item.gold is not None:
            for vote in votes:
                correct, answered = gold.get(vote.annotator, (0, 0))
                gold[vote.annotator] = (correct + int(vote.relevance == item.gold), answered + 1)
            continue
        if votes:
            rows.append((item, votes))
    per_item = {q: [{v.annotator: item.source_of(getattr(v, q)) for v in votes} for item, votes in rows]
                for q in ("relevance", "realism")}
    annotators = sorted({v.annotator for _, votes in rows for v in votes}, key=_natural)
    stats = {}
    for q, items in per_item.items():
        lists = [list(d.values()) for d in items]
        stats[q] = {"fleiss": agreement.fleiss(lists), "krippendorff_alpha": agreement.alpha(items, annotators),
                    "annotators": agreement.per_annotator(items, slots[q], gold if q == "relevance" else {})}
    return {"rows": rows, "per_item": per_item, "stats": stats}


def _tsv(header: str, lines: list[str]) -> str:
    return header + "".join(lines)


def collect(vote_files: list[Path], kit_folder: Path, out: Path) -> dict[str, Any]:
    """Merge ``vote_files`` into ``out`` and rewrite the derived files; returns the summary (``--json``)."""
    kit = Kit.read(kit_folder)
    store = read_store(out)
    before = len(store)
    added = {str(p): merge(store, read_votes_file(p, kit)) for p in vote_files}  # all checked before any write
    derived = derive(kit, store)
    rows, per_item = derived["rows"], derived["per_item"]
    alignment = [[d[a] for a in d] for d in per_item["relevance"]]
    realism = [[d[a] for a in d] for d in per_item["realism"]]
    decisions = [confident_decision(v) for v in alignment]
    names = file_names(kit.meta.get("prefix", "PartiPrompts"))
    base_header = "\t".join(BASE_COLUMNS)
    ordered = sorted(store.values(), key=lambda v: (v.item, _natural(v.annotator)))
    atomic_write_text(out / VOTES_FILE, "".join(json.dumps(v.__dict__, sort_keys=True) + "\n" for v in ordered))
    atomic_write_text(out / names["alignment"], _tsv(base_header + "\tDecisions\n",
                                                    [_row(item, v) for (item, _), v in zip(rows, alignment)]))
    atomic_write_text(out / names["realism"], _tsv(base_header + "\tDecisions\n",
                                                  [_row(item, v) for (item, _), v in zip(rows, realism)]))
    atomic_write_text(out / names["confident"], _tsv(base_header + "\tDecision\n",
                                                    [_row(item, [d]) for (item, _), d in zip(rows, decisions)]))
    atomic_write_json(out / AGREEMENT_FILE, derived["stats"])
    write_review(out, Path(kit_folder), [(item, a, r, d) for (item, _), a, r, d in zip(rows, alignment, realism, decisions)])
    flagged = {q: {a: s["flags"] for a, s in derived["stats"][q]["annotators"].items() if s["flags"]}
               for q in derived["stats"]}
    summary = {
        "out": str(out), "kit": str(kit_folder), "kit_id": kit.meta.get("kit_id"), "files": names,
        "votes": len(store), "votes_added": len(store) - before, "added_per_file": added,
        "items_with_votes": len(rows), "items_without_votes": sum(1 for i in kit.items if i.gold is None) - len(rows),
        "annotators": len({v.annotator for v in store.values()}),
        "labels": {label: Counter(decisions).get(label, 0) for label in ("gen", "ret", "same")},
        "fleiss_kappa": {q: s["fleiss"]["kappa"] for q, s in derived["stats"].items()},
        "krippendorff_alpha": {q: s["krippendorff_alpha"] for q, s in derived["stats"].items()},
        "flagged": flagged,
        "keys": [item.id for item, _ in rows],
    }
    per_run = ("out", "votes_added", "added_per_file")  # collect.json depends only on what is collected
    atomic_write_json(out / COLLECT_FILE, {k: v for k, v in summary.items() if k not in per_run})
    return summary
