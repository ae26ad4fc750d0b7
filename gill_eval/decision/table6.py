"""Every row of the paper's Table 6 on the val split, plus bootstrap intervals and cross-validation.

Inputs are the labelled rows, and optionally a trained classifier with its features and a heuristic
signal (``max_cosine``). Rows that lack their input are None, never filled in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from gill_eval.decision import baselines
from gill_eval.decision.annotations import Labelled
from gill_eval.decision.classifier import (
    OFFICIAL_SEED,
    LinearDecisionModel,
    best_checkpoint_model,
    checkpoint_summary,
    train,
)
from gill_eval.decision.scores import bootstrap_ci, row_counts
from gill_eval.decision.sweep import predict, probability_thresholds, score_thresholds, sweep
from gill_eval.errors import ConfigError


@dataclass(frozen=True)
class Settings:
    """How the scores are computed (all recorded in the result)."""

    thresholds: int = 50
    bootstrap: int = 1000
    random_draws: int = 1000
    cv: int = 0
    seed: int = 0


def _const_row(y: np.ndarray, label: int, s: Settings) -> dict[str, Any]:
    pred = np.full_like(y, label)
    return {"f1": baselines.always(y, label), "ci95": bootstrap_ci(row_counts(y, pred), s.bootstrap, s.seed)}


def _sweep_row(y: np.ndarray, scores: np.ndarray, thresholds: np.ndarray, s: Settings) -> dict[str, Any]:
    """A sweep (``scores``: (N, 2) classifier probabilities or (N,) heuristic scores) with its intervals."""
    result = sweep(y, scores, thresholds)
    row = result.summary()
    row["ci95_at_half"] = bootstrap_ci(row_counts(y, predict(scores, 0.5)), s.bootstrap, s.seed)
    row["ci95_at_best"] = bootstrap_ci(row_counts(y, predict(scores, result.best_threshold)), s.bootstrap, s.seed)
    return row


def cross_validate(
    features: np.ndarray, labels: np.ndarray, classifier: str, s: Settings, c: float = 1.0,
    train_seed: int = OFFICIAL_SEED,
) -> dict[str, Any]:
    """Stratified K-fold over all usable rows: per fold, train on K-1 folds, sweep on the held-out fold.

    Not the paper's protocol (one split: the first 600 usable rows train); an extra view of its spread.
    """
    if s.cv < 2:
        raise ConfigError(f"--cv {s.cv}: need at least 2 folds")
    folds = StratifiedKFold(n_splits=s.cv, shuffle=True, random_state=s.seed)
    grid = probability_thresholds(s.thresholds)
    at_half, best, low = [], [], []
    for train_idx, test_idx in folds.split(features, labels):
        model = train(classifier, features[train_idx], labels[train_idx], seed=train_seed, c=c)
        result = sweep(labels[test_idx], model.probabilities(features[test_idx]), grid)
        at_half.append(result.at_half)
        best.append(result.max)
        low.append(result.min)

    def stats(values: list[float]) -> dict[str, float]:
        return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1))}

    return {"folds": s.cv, "classifier": classifier, "rows": int(len(labels)), "at_half": stats(at_half),
            "max": stats(best), "min": stats(low), "per_fold_at_half": at_half}


def evaluate(
    data: Labelled,
    s: Settings,
    classifier: tuple[LinearDecisionModel, np.ndarray, np.ndarray] | None = None,
    heuristic: np.ndarray | None = None,
) -> dict[str, Any]:
    """All Table 6 rows on the val split.

    ``classifier`` is (model, val features, all usable features in ``data`` order) and ``heuristic`` the
    max cosine of each usable row in ``data`` order.
    """
    train_idx, val_idx = data.subset("train"), data.subset("val")
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ConfigError(f"{data.annotations}: the train or val split is empty")
    y = data.labels[val_idx]
    p_train = float(data.labels[train_idx].mean())
    draws = baselines.random_draws(y, p_train, s.random_draws, s.seed)
    rows: dict[str, Any] = {
        "always_retrieve": _const_row(y, 1, s),
        "always_generate": _const_row(y, 0, s),
        "random": {"f1": baselines.random_expected(y, p_train), "p_ret": p_train,
                   "draws": {"mean": draws.mean, "std": draws.std, "n": draws.draws, "seed": draws.seed}},
        "heuristic": None,
        "classifier": None,
        "human": {
            "f1": baselines.human_pooled(data.labels, data.votes),
            "ci95": bootstrap_ci(baselines.human_row_counts(data.labels, data.votes), s.bootstrap, s.seed),
            "rows": int(len(data.labels)),
            "votes": int(len(baselines.human_pairs(data.labels, data.votes)[0])),
        },
    }
    if heuristic is not None:
        scores = heuristic[val_idx]
        rows["heuristic"] = _sweep_row(y, scores, score_thresholds(scores, s.thresholds), s)
    cv = None
    if classifier is not None:
        model, val_features, all_features = classifier
        # the sweep of the notebook's "Best F1" checkpoint (best at t = 0.5), or of the model as saved
        scored = best_checkpoint_model(model)
        rows["classifier"] = _sweep_row(y, scored.probabilities(val_features), probability_thresholds(s.thresholds), s)
        if "checkpoints" in model.meta:
            rows["classifier"]["checkpoints"] = model.meta["checkpoints"]
        if "best_checkpoint" in model.meta:
            rows["classifier"]["best_checkpoint"] = checkpoint_summary(model.meta)
        if s.cv:
            kind = model.meta.get("classifier", "logreg")
            cv = cross_validate(all_features, data.labels, "linear-dropout" if kind == "official" else kind, s,
                                c=float(model.meta.get("C", 1.0)),
                                train_seed=int(model.meta.get("seed", OFFICIAL_SEED)))
    counts = {split: {"gen": int((data.labels[idx] == 0).sum()), "ret": int((data.labels[idx] == 1).sum())}
              for split, idx in (("train", train_idx), ("val", val_idx))}
    return {"annotations": data.annotations, "counts": counts, "rows": rows, "cv": cv,
            "settings": asdict(s)}
