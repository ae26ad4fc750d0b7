"""One vote record for every collection path, and the checks every import shares.

A vote is one annotator's two answers (relevance, realism) on one item, each ``A``, ``B`` or ``same``;
``origin`` names the file and row or record it came from, so every error can point at it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gill_eval.annotate.items import CHOICES, Kit
from gill_eval.errors import InputError


@dataclass(frozen=True)
class Vote:
    """One annotator's answers on one item (slots, not sources: ``collect`` undoes the order)."""

    item: str
    annotator: str
    relevance: str
    realism: str
    origin: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.item, self.annotator)

    def answers(self) -> tuple[str, str]:
        return (self.relevance, self.realism)


def check_answer(value: object, question: str, origin: str) -> str:
    """An answer as ``A``/``B``/``same``; anything else is an error naming where it came from."""
    if value not in CHOICES:
        raise InputError(f"{origin}: {question} answer {value!r} is not one of {', '.join(CHOICES)}")
    return str(value)


def check_votes(votes: Iterable[Vote], kit: Kit) -> list[Vote]:
    """The votes of one export, checked: known items, and at most one vote per (item, annotator)."""
    known = kit.by_id()
    seen: dict[tuple[str, str], Vote] = {}
    for vote in votes:
        if vote.item not in known:
            raise InputError(f"{vote.origin}: unknown item {vote.item!r} (not in {kit.folder / 'tasks.json'})")
        if not vote.annotator:
            raise InputError(f"{vote.origin}: no annotator id")
        if vote.key in seen:
            raise InputError(f"{vote.origin}: duplicate vote by {vote.annotator!r} on item {vote.item!r} "
                             f"(first at {seen[vote.key].origin})")
        seen[vote.key] = vote
    return list(seen.values())
