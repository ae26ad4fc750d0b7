"""Threshold sweeps of Table 6, with the prediction rule of GILL's TrainDecisionClassifier.ipynb.

Classifier (docs/protocols.md, Table 6): the notebook sweeps ``np.linspace(0, 1, 50)`` and predicts
``argmax(softmax(logits) > t)`` over [gen, ret]; argmax takes the first maximum, so a prompt is ret only
when p_ret > t and p_gen <= t. At t = 0 every row is gen (p_gen > 0), so the sweep's lower end is the
always-generate F1; for t >= 0.5 the rule is p_ret > t. Heuristic (a single score, the max cosine): ret
when the score is above t, over the observed range, from just below the smallest score (every row ret)
to the largest (every row gen). The paper reports each sweep as a min-max range over its thresholds plus
the value at 0.5; we add the best threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from gill_eval.decision.scores import macro_f1, macro_f1_from_counts

OFFICIAL_THRESHOLDS = 50  # np.linspace(0, 1, num=50) in the notebook


@dataclass(frozen=True)
class Sweep:
    """F1 at each threshold and its summary."""

    thresholds: list[float]
    f1: list[float]
    at_half: float
    best_threshold: float

    @property
    def min(self) -> float:
        return min(self.f1)

    @property
    def max(self) -> float:
        return max(self.f1)

    def summary(self) -> dict[str, Any]:
        """The JSON form (with min, max and best F1)."""
        return {**asdict(self), "min": self.min, "max": self.max}


def probability_thresholds(n: int = OFFICIAL_THRESHOLDS) -> np.ndarray:
    """``n`` evenly spaced thresholds on [0, 1] (the notebook's grid for n = 50)."""
    return np.linspace(0.0, 1.0, n)


def score_thresholds(scores: np.ndarray, n: int) -> np.ndarray:
    """``n`` thresholds from just below min(scores) (all ret) to max(scores) (all gen)."""
    lo = np.nextafter(float(scores.min()), -np.inf)
    return np.linspace(lo, float(scores.max()), n)


def predict(scores: np.ndarray, threshold: float) -> np.ndarray:
    """1 (ret) or 0 (gen) per row at ``threshold``.

    ``scores`` (N, 2) are [p_gen, p_ret] probabilities under the notebook's rule (ret iff p_ret > t and
    p_gen <= t); ``scores`` (N,) are heuristic scores (ret iff score > t).
    """
    s = np.asarray(scores)
    if s.ndim == 2:
        return ((s[:, 1] > threshold) & ~(s[:, 0] > threshold)).astype(np.int64)
    return (s > threshold).astype(np.int64)


def sweep(y_true: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> Sweep:
    """Macro-F1 of ``predict(scores, t)`` for each threshold; ties for best go to the lowest threshold."""
    truth = np.asarray(y_true)[None, :] == 1
    pred = np.stack([predict(scores, t) for t in thresholds]).astype(bool)  # (T, N)
    f1 = macro_f1_from_counts((truth & pred).sum(1), (~truth & pred).sum(1), (truth & ~pred).sum(1),
                              (~truth & ~pred).sum(1)).tolist()
    best = int(np.argmax(f1))
    return Sweep(
        thresholds=[float(t) for t in thresholds],
        f1=f1,
        at_half=macro_f1(y_true, predict(scores, 0.5)),
        best_threshold=float(thresholds[best]),
    )
