"""The task file of an annotation kit: one item per prompt, its two images in slots A and B.

``tasks.json`` in the kit folder holds the build's provenance and the items; ``images/<id>-a.*`` and
``images/<id>-b.*`` are the slot images (named by slot, so the file names say nothing about which image
was generated). ``a`` says which source sits in slot A (``gen`` or ``ret``), drawn per item from the
recorded order seed; gold items carry the expected relevance answer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gill_eval.errors import InputError
from gill_eval.store import atomic_write_json

TASKS_FILE = "tasks.json"
SOURCES = ("gen", "ret")
CHOICES = ("A", "B", "same")  # what an annotator answers
QUESTIONS = {
    "relevance": "Is image A or image B more relevant to the above caption?",
    "realism": "Is image A or image B more realistic?",
}


@dataclass(frozen=True)
class Item:
    """One annotation item: a prompt with its two images in randomised slots."""

    id: str
    prompt: str
    a: str  # the source in slot A: "gen" or "ret"
    image_a: str  # paths relative to the kit folder
    image_b: str
    base: tuple[str, str, str, str] = ("", "", "", "")  # Prompt, Category, Challenge, Note (official columns)
    gold: str | None = None  # the expected relevance answer ("A" or "B") of an attention check

    def source_of(self, choice: str) -> str:
        """The vote an answer stands for: ``A``/``B`` -> ``gen``/``ret`` through this item's order."""
        if choice == "same":
            return "same"
        if choice == "A":
            return self.a
        if choice == "B":
            return SOURCES[1 - SOURCES.index(self.a)]
        raise ValueError(f"unknown choice {choice!r}")

    def choice_for(self, source: str) -> str:
        """The answer that stands for ``source`` (the inverse of ``source_of``)."""
        if source == "same":
            return "same"
        return "A" if source == self.a else "B"


def slot_order(seed: int, item_id: str) -> str:
    """The source in slot A for ``item_id``: a fair coin from (seed, id), independent of item order."""
    digest = hashlib.sha256(f"ab-order:{seed}:{item_id}".encode()).digest()
    return SOURCES[digest[0] & 1]


@dataclass
class Kit:
    """A kit folder's task file: provenance and items."""

    folder: Path
    items: list[Item]
    meta: dict[str, Any] = field(default_factory=dict)

    def by_id(self) -> dict[str, Item]:
        return {item.id: item for item in self.items}

    def write(self) -> None:
        atomic_write_json(self.folder / TASKS_FILE, {**self.meta, "items": [_item_json(i) for i in self.items]})

    @classmethod
    def read(cls, folder: str | Path) -> "Kit":
        folder = Path(folder)
        path = folder / TASKS_FILE
        if not path.is_file():
            raise InputError(f"{path}: no task file; run `gill-eval annotate build --out {folder}` first")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            items = [_item_from(raw) for raw in data.pop("items")]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: not a gill-eval task file ({exc})") from exc
        return cls(folder, items, data)

    def public_items(self) -> list[dict[str, str]]:
        """What annotators may see: id, prompt and the two slot images (never the order or gold answer)."""
        return [{"id": i.id, "prompt": i.prompt, "image_a": i.image_a, "image_b": i.image_b} for i in self.items]


def _item_json(item: Item) -> dict[str, Any]:
    out = asdict(item)
    out["base"] = list(item.base)
    return out


def _item_from(raw: dict[str, Any]) -> Item:
    if raw["a"] not in SOURCES:
        raise ValueError(f"item {raw.get('id')!r}: a={raw['a']!r}, expected gen or ret")
    base = tuple(raw.get("base") or ("", "", "", ""))
    if len(base) != 4:
        raise ValueError(f"item {raw.get('id')!r}: base has {len(base)} fields, expected 4")
    return Item(id=str(raw["id"]), prompt=str(raw["prompt"]), a=raw["a"], image_a=raw["image_a"],
                image_b=raw["image_b"], base=base, gold=raw.get("gold"))  # type: ignore[arg-type]
