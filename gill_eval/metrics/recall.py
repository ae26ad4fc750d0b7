"""Recall@k for contextual image retrieval (GILL Table 5, FROMAGe protocol).

The rank of a target is the number of *other* candidates scoring at least as high (pessimistic ties):
``torch.topk`` breaks ties in an implementation-defined order, which would make recall depend on the
device. Candidates excluded for a query (the story's own context images) score ``-inf``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def apply_exclusions(scores: np.ndarray, exclude: Sequence[Sequence[int]]) -> np.ndarray:
    """A copy of ``scores`` (Q, C) with each query's excluded candidate indices set to -inf."""
    out = np.array(scores, dtype=np.float64, copy=True)
    for q, idx in enumerate(exclude):
        if len(idx):
            out[q, list(idx)] = -np.inf
    return out


def pessimistic_ranks(scores: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """0-based rank of each query's target: candidates other than it with score >= its score."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets, dtype=np.int64)
    target_scores = s[np.arange(len(t)), t]
    if np.isneginf(target_scores).any():
        bad = int(np.flatnonzero(np.isneginf(target_scores))[0])
        raise ValueError(f"query {bad}: its target is excluded")
    at_least = (s >= target_scores[:, None]).sum(axis=1)
    return (at_least - 1).astype(np.int64)  # minus the target itself


def recall_at_k(ranks: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Fraction of queries whose rank is below k."""
    r = np.asarray(ranks)
    return {k: float((r < k).mean()) if len(r) else float("nan") for k in ks}
