"""Threshold sweeps: predict ret when a score is strictly above t, for a grid of t.

The paper reports each sweep as a min-max range over thresholds plus the value at 0.5; we add the best
threshold. Classifier probabilities are swept over [0, 1]; heuristic cosines over the observed range,
from just below the smallest score (every row ret) to the largest (every row gen), so both constant
predictors are the ends of every sweep.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from gill_eval.decision.scores import macro_f1


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


def probability_thresholds(n: int) -> np.ndarray:
    """``n`` evenly spaced thresholds on [0, 1] (p(ret) > 0 is ret for any positive p; > 1 is never)."""
    return np.linspace(0.0, 1.0, n)


def score_thresholds(scores: np.ndarray, n: int) -> np.ndarray:
    """``n`` thresholds from just below min(scores) (all ret) to max(scores) (all gen)."""
    lo = np.nextafter(float(scores.min()), -np.inf)
    return np.linspace(lo, float(scores.max()), n)


def sweep(y_true: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> Sweep:
    """Macro-F1 of ``scores > t`` for each threshold; ties for best go to the lowest threshold."""
    f1 = [macro_f1(y_true, (scores > t).astype(np.int64)) for t in thresholds]
    best = int(np.argmax(f1))
    return Sweep(
        thresholds=[float(t) for t in thresholds],
        f1=f1,
        at_half=macro_f1(y_true, (scores > 0.5).astype(np.int64)),
        best_threshold=float(thresholds[best]),
    )
