"""Inter-annotator statistics on de-randomised votes (``gen``/``ret``/``same`` per annotator and item).

Fleiss' kappa comes from ``statsmodels`` (it needs the same number of raters on every item, so it is
computed over the items with the most common number of votes, and says how many); Krippendorff's alpha
(nominal) from ``krippendorff``, which allows missing votes. Each annotator's agreement is the share of
their votes equal to the item's plurality vote (items whose plurality is tied are left out).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import krippendorff
import numpy as np
from statsmodels.stats.inter_rater import fleiss_kappa

from gill_eval.datasets.partiprompts import VOTES

ALWAYS_MIN_VOTES = 10  # an annotator is flagged as always-A/always-B only with at least this many answers


def count_table(votes: list[list[str]]) -> np.ndarray:
    """Items x categories (``VOTES`` order) counts."""
    return np.array([[Counter(v)[c] for c in VOTES] for v in votes], dtype=np.int64)


def fleiss(votes: list[list[str]]) -> dict[str, Any]:
    """Fleiss' kappa over the items with the modal number of votes."""
    if not votes:
        return {"kappa": None, "items": 0, "raters": 0}
    raters = Counter(len(v) for v in votes).most_common(1)[0][0]
    table = count_table([v for v in votes if len(v) == raters])
    one_category = int((table.sum(axis=0) > 0).sum()) < 2  # chance agreement 1: kappa undefined (0/0)
    value = None if raters < 2 or one_category else float(fleiss_kappa(table, method="fleiss"))
    return {"kappa": value, "items": int(table.shape[0]), "raters": int(raters)}


def reliability_matrix(per_item: list[dict[str, str]], annotators: list[str]) -> np.ndarray:
    """Annotators x items, the vote's index in ``VOTES`` or NaN where an annotator did not vote."""
    matrix = np.full((len(annotators), len(per_item)), np.nan)
    row = {a: i for i, a in enumerate(annotators)}
    for j, votes in enumerate(per_item):
        for annotator, vote in votes.items():
            matrix[row[annotator], j] = VOTES.index(vote)
    return matrix


def alpha(per_item: list[dict[str, str]], annotators: list[str]) -> float | None:
    """Krippendorff's alpha (nominal); None when there is nothing to compare."""
    matrix = reliability_matrix(per_item, annotators)
    pairable = matrix[:, np.sum(~np.isnan(matrix), axis=0) >= 2]  # alpha only uses items with 2+ votes
    if len(np.unique(pairable[~np.isnan(pairable)])) < 2:  # no disagreement expected: alpha undefined (0/0)
        return None
    return float(krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal"))


def plurality(votes: list[str]) -> str | None:
    """The most common vote, or None when the top count is tied."""
    top = Counter(votes).most_common()
    if not top or (len(top) > 1 and top[0][1] == top[1][1]):
        return None
    return top[0][0]


def per_annotator(per_item: list[dict[str, str]], slots: dict[str, list[str]],
                  gold: dict[str, tuple[int, int]]) -> dict[str, dict[str, Any]]:
    """Per annotator: votes, agreement with the plurality, gold accuracy, always-A/always-B flags.

    ``slots`` holds each annotator's raw answers (``A``/``B``/``same``) on one question, ``gold`` the
    (correct, answered) counts on gold items.
    """
    agree: dict[str, list[int]] = {}
    for votes in per_item:
        majority = plurality(list(votes.values()))
        if majority is None:
            continue
        for annotator, vote in votes.items():
            agree.setdefault(annotator, []).append(int(vote == majority))
    out: dict[str, dict[str, Any]] = {}
    for annotator in sorted(set(slots) | set(agree) | set(gold)):
        answers = Counter(slots.get(annotator, []))
        total = sum(answers.values())
        flags = [f"always-{side}" for side in ("A", "B") if total >= ALWAYS_MIN_VOTES and answers[side] == total]
        hits = agree.get(annotator, [])
        correct, answered = gold.get(annotator, (0, 0))
        out[annotator] = {
            "votes": total,
            "agreement_with_majority": (sum(hits) / len(hits)) if hits else None,
            "gold_accuracy": (correct / answered) if answered else None,
            "gold_answered": answered,
            "answers": {side: answers[side] for side in ("A", "B", "same")},
            "flags": flags,
        }
    return out
