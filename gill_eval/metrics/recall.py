"""Recall@k for contextual image retrieval (GILL Table 5, FROMAGe protocol).

The rank of a target is the number of *other* candidates scoring at least as high (pessimistic ties):
``torch.topk`` breaks ties in an implementation-defined order, which would make recall depend on the
device. Candidates excluded for a query (the story's own context images) lose ``EXCLUSION_PENALTY`` per
listed occurrence, as FROMAGe's evals/eval_vist_retrieval.py subtracts 10000 (docs/protocols.md, Table 5):
scores are cosines, so every excluded candidate falls below every other one and keeps its order, and a
target that is also a context image ranks below all the others (a miss), never an error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


EXCLUSION_PENALTY = 10000.0


def apply_exclusions(scores: np.ndarray, exclude: Sequence[Sequence[int]]) -> np.ndarray:
    """A copy of ``scores`` (Q, C) where each query's excluded candidate indices lose ``EXCLUSION_PENALTY``
    once per listed occurrence (FROMAGe's ``scores[...] -= 10000`` for each context image)."""
    out = np.array(scores, dtype=np.float64, copy=True)
    for q, idx in enumerate(exclude):
        np.subtract.at(out[q], np.asarray(list(idx), dtype=np.int64), EXCLUSION_PENALTY)
    return out


def excluded(scores: np.ndarray) -> np.ndarray:
    """Which entries of ``apply_exclusions`` output were penalised (cosine scores lie in [-1, 1])."""
    return np.asarray(scores) < -EXCLUSION_PENALTY / 2


def pessimistic_ranks(scores: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """0-based rank of each query's target: candidates other than it with score >= its score."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets, dtype=np.int64)
    target_scores = s[np.arange(len(t)), t]
    at_least = (s >= target_scores[:, None]).sum(axis=1)
    return (at_least - 1).astype(np.int64)  # minus the target itself


def recall_at_k(ranks: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Fraction of queries whose rank is below k."""
    r = np.asarray(ranks)
    return {k: float((r < k).mean()) if len(r) else float("nan") for k in ks}
