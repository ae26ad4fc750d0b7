"""Simulated annotators for the quickstart and for trying the kit without people: annotator j casts the
j-th published vote (PartiPrompts' Alignment and Realism files) on each PartiPrompts item, through the
item's A/B order, and answers gold items correctly. Written as page exports, so ``collect`` reads them
exactly as it reads real ones."""

from __future__ import annotations

import json
from pathlib import Path

from gill_eval.annotate.items import Kit
from gill_eval.annotate.page import EXPORT_FORMAT
from gill_eval.datasets.partiprompts import ALIGNMENT, BASE_COLUMNS, REALISM, parse_votes, read_tsv
from gill_eval.errors import ConfigError
from gill_eval.store import atomic_write_text


def published_votes(folder: Path) -> dict[str, tuple[list[str], list[str]]]:
    """``parti-NNNN`` -> (Alignment votes, Realism votes) from the official files in ``folder``."""
    columns = BASE_COLUMNS + ["Decisions"]
    alignment, realism = read_tsv(folder / ALIGNMENT, columns), read_tsv(folder / REALISM, columns)
    return {f"parti-{i:04d}": (parse_votes(a[4], folder / ALIGNMENT, i + 2), parse_votes(r[4], folder / REALISM, i + 2))
            for i, (a, r) in enumerate(zip(alignment, realism))}


def simulate_page_exports(kit: Kit, votes_folder: Path, out: Path) -> list[Path]:
    """One page export per simulated annotator (``sim-1`` ... ``sim-5``) in ``out``."""
    published = published_votes(votes_folder)
    unknown = [i.id for i in kit.items if i.gold is None and i.id not in published]
    if unknown:
        raise ConfigError(f"{kit.folder}: items {', '.join(unknown[:3])} are not PartiPrompts rows; "
                          "simulated annotators only know the published PartiPrompts votes")
    exports: dict[int, list[dict[str, str]]] = {n: [] for n in range(1, 6)}
    for item in kit.items:
        for n in exports:
            if item.gold is not None:
                exports[n].append({"item": item.id, "relevance": item.gold, "realism": item.gold})
                continue
            alignment, realism = published[item.id]
            if n <= len(alignment):
                exports[n].append({"item": item.id, "relevance": item.choice_for(alignment[n - 1]),
                                   "realism": item.choice_for(realism[n - 1])})
    paths = []
    for n, votes in exports.items():
        path = out / f"votes-sim-{n}.json"
        atomic_write_text(path, json.dumps({"format": EXPORT_FORMAT, "kit_id": kit.meta["kit_id"],
                                            "annotator": f"sim-{n}", "votes": votes}, indent=1))
        paths.append(path)
    return paths
