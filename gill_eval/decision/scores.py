"""Macro-F1 over the two classes (gen = 0, ret = 1): one prediction vector via scikit-learn, many at once
from confusion counts (bootstrap resamples, the exact expectation of the random baseline).

Both follow scikit-learn's definition with ``zero_division=0``: a class's F1 is 2TP / (2TP + FP + FN), and
0 when that denominator is 0. ``tests/test_decision_scores.py`` checks the vectorised form against
``sklearn.metrics.f1_score`` and against hand-computed confusion counts.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-F1 over the classes gen and ret (both always counted, even if absent from the predictions)."""
    return float(f1_score(y_true, y_pred, labels=[0, 1], average="macro", zero_division=0))


def _class_f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros(np.broadcast(tp, denom).shape), where=denom > 0)


def macro_f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> np.ndarray:
    """Macro-F1 from the ret-class confusion counts (arrays broadcast); gen's TP is ret's TN."""
    tp, fp, fn, tn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn, tn))
    return (_class_f1(tp, fp, fn) + _class_f1(tn, fn, fp)) / 2


def row_counts(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per-row confusion counts (tp, fp, fn, tn) of the ret class, shape (N, 4)."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    cells = [(t == 1) & (p == 1), (t == 0) & (p == 1), (t == 1) & (p == 0), (t == 0) & (p == 0)]
    return np.stack(cells, axis=1).astype(np.int64)


def bootstrap_ci(counts: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of macro-F1, resampling rows (with their counts) with replacement.

    ``counts`` is (N, 4) per-row (tp, fp, fn, tn); a row may hold several predictions (the pooled human
    votes of one prompt), so the resampling unit is the prompt, not the vote.
    """
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(counts), size=(n_boot, len(counts)))
    totals = counts[idx].sum(axis=1)  # (n_boot, 4)
    values = macro_f1_from_counts(totals[:, 0], totals[:, 1], totals[:, 2], totals[:, 3])
    alpha = (1 - level) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return float(lo), float(hi)
