"""Helpers of the annotation tests: a kit over the official PartiPrompts rows, and the published votes turned
into A/B answers of five simulated annotators (vote j of a row is annotator j's). Import it from a test
module: ``from annotate_support import ...``."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

from gill_eval.annotate.items import Item, Kit, slot_order

PARTI = Path(__file__).resolve().parents[1] / "gill_eval" / "sample" / "files" / "partiprompts"
ALIGNMENT = PARTI / "PartiPromptsAllDecisions_Alignment.tsv"
REALISM = PARTI / "PartiPromptsAllDecisions_Realism.tsv"
CONFIDENT = PARTI / "PartiPromptsDecisionsConfident.tsv"


def official_rows(path: Path) -> list[list[str]]:
    """Tab-split rows of an official file, header excluded (no CSV quoting, as the files use none)."""
    return [line.split("\t") for line in path.read_text(encoding="utf-8").split("\n")[1:] if line]


def official_votes() -> tuple[list[list[str]], list[list[str]]]:
    return ([r[4].split(",") for r in official_rows(ALIGNMENT)], [r[4].split(",") for r in official_rows(REALISM)])


def check_official(out: Path, summary: dict[str, Any]) -> None:
    """The collected files equal the published ones byte for byte; label counts equal the Confident file's."""
    for name, official in (("PartiPromptsAllDecisions_Alignment.tsv", ALIGNMENT),
                           ("PartiPromptsAllDecisions_Realism.tsv", REALISM),
                           ("PartiPromptsDecisionsConfident.tsv", CONFIDENT)):
        assert (out / name).read_bytes() == official.read_bytes(), name
    shipped = Counter(r[4].strip() for r in official_rows(CONFIDENT))
    assert summary["labels"] == {k: shipped[k] for k in ("gen", "ret", "same")}
    assert summary["items_with_votes"] == 1632 and summary["items_without_votes"] == 0


def official_kit(folder: Path, order_seed: int = 7) -> Kit:
    """A kit with every official row (no images: collect does not read them)."""
    items = []
    for i, row in enumerate(official_rows(ALIGNMENT)):
        key = f"parti-{i:04d}"
        items.append(Item(key, row[0], slot_order(order_seed, key), f"images/{key}-a.png", f"images/{key}-b.png",
                          (row[0], row[1], row[2], row[3])))
    kit = Kit(folder, items, {"kit_id": f"official-{order_seed}", "prefix": "PartiPrompts", "order_seed": order_seed})
    kit.write()
    return kit


def slot(item: Item, source: str) -> str:
    """The answer an annotator who means ``source`` gives, worked out from the item's order (an oracle
    written apart from ``Item.choice_for``)."""
    if source == "same":
        return "same"
    return "A" if item.a == source else "B"


def simulated(kit: Kit) -> list[dict[str, Any]]:
    """Every official vote as (annotator number, item, relevance answer, realism answer)."""
    alignment, realism = official_votes()
    out = []
    for item, av, rv in zip(kit.items, alignment, realism):
        for j, (a, r) in enumerate(zip(av, rv)):
            out.append({"n": j + 1, "item": item.id, "relevance": slot(item, a), "realism": slot(item, r)})
    return out


def page_exports(kit: Kit, folder: Path) -> list[Path]:
    """One page export per simulated annotator."""
    by_annotator: dict[int, list[dict[str, str]]] = {}
    for v in simulated(kit):
        by_annotator.setdefault(v["n"], []).append({"item": v["item"], "relevance": v["relevance"],
                                                     "realism": v["realism"], "at": "2026-01-01T00:00:00Z"})
    paths = []
    for n, votes in sorted(by_annotator.items()):
        path = folder / f"votes-annotator-{n}.json"
        path.write_text(json.dumps({"format": "gill-eval-annotate-page/1", "kit_id": kit.meta["kit_id"],
                                    "annotator": f"annotator-{n}", "votes": votes}), encoding="utf-8")
        paths.append(path)
    return paths


def crowd_results(kit: Kit, path: Path) -> Path:
    """A Mechanical Turk style batch results CSV (quoted fields; a rejected assignment that must not count)."""
    prompts = {i.id: i.prompt for i in kit.items}
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(["HITId", "WorkerId", "AssignmentStatus", "Input.item", "Input.prompt", "Answer.relevance",
                     "Answer.realism"])
    for k, v in enumerate(simulated(kit)):
        writer.writerow([f"H{k // 5}", f"W{v['n']}", "Approved", v["item"], prompts[v["item"]], v["relevance"],
                         v["realism"]])
    writer.writerow(["Hx", "W9", "Rejected", kit.items[0].id, "", "A", "A"])
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def labelstudio_tasks(kit: Kit) -> list[dict[str, Any]]:
    """Label Studio tasks with the simulated votes as annotations by users 1..5 (``completed_by``)."""
    votes: dict[str, list[dict[str, Any]]] = {}
    for v in simulated(kit):
        votes.setdefault(v["item"], []).append({"completed_by": v["n"], "result": [
            {"from_name": q, "to_name": "image_a", "type": "choices", "value": {"choices": [v[q]]}}
            for q in ("relevance", "realism")]})
    return [{"data": {"item": i.id, "prompt": i.prompt, "image_a": "http://127.0.0.1/a.png",
                      "image_b": "http://127.0.0.1/b.png"}, "annotations": votes[i.id]} for i in kit.items]


def small_kit(folder: Path, n: int = 3, order_seed: int = 0) -> Kit:
    """A kit of ``n`` made-up prompts with small distinct PNG slot images (A red-ish, B blue-ish)."""
    from PIL import Image

    items = []
    for k in range(n):
        key = f"p-{k:05d}"
        names = (f"images/{key}-a.png", f"images/{key}-b.png")
        for s, name in enumerate(names):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            colour = (200, 40 * k, 0) if s == 0 else (0, 40 * k, 200)
            Image.new("RGB", (32 + 8 * k, 24), colour).save(folder / name)
        prompt = f'a "quoted" <b>prompt</b> number {k}'
        items.append(Item(key, prompt, slot_order(order_seed, key), *names, base=(prompt, "Cat", "Basic", "")))
    kit = Kit(folder, items, {"kit_id": f"small-{n}-{order_seed}", "prefix": "Small", "order_seed": order_seed})
    kit.write()
    return kit
