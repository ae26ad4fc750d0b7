"""The rows of Table 6 that need no features: constant predictors, random, and human agreement."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

from gill_eval.decision.scores import macro_f1, macro_f1_from_counts, row_counts


def always(y_true: np.ndarray, label: int) -> float:
    """Macro-F1 of predicting ``label`` (0 = gen, 1 = ret) for every row."""
    return macro_f1(y_true, np.full_like(y_true, label))


def random_expected(y_true: np.ndarray, p_ret: float) -> float:
    """The exact expected macro-F1 of predicting ret with probability ``p_ret`` independently per row.

    TP ~ Binomial(n_ret, p) and FP ~ Binomial(n_gen, p) are independent, and every other count follows
    from them, so the expectation is a finite double sum over their joint distribution (no sampling).
    """
    n_ret = int((y_true == 1).sum())
    n_gen = int((y_true == 0).sum())
    tp = np.arange(n_ret + 1)[:, None]
    fp = np.arange(n_gen + 1)[None, :]
    weights = binom.pmf(tp, n_ret, p_ret) * binom.pmf(fp, n_gen, p_ret)
    return float((weights * macro_f1_from_counts(tp, fp, n_ret - tp, n_gen - fp)).sum())


@dataclass(frozen=True)
class RandomDraws:
    """Mean and standard deviation of macro-F1 over seeded random prediction vectors."""

    mean: float
    std: float
    draws: int
    seed: int


def random_draws(y_true: np.ndarray, p_ret: float, draws: int = 1000, seed: int = 0) -> RandomDraws:
    """Macro-F1 of ``draws`` seeded Bernoulli(``p_ret``) prediction vectors."""
    rng = np.random.default_rng(seed)
    pred = rng.random((draws, len(y_true))) < p_ret  # one row per draw
    truth = np.asarray(y_true)[None, :] == 1
    values = macro_f1_from_counts((truth & pred).sum(1), (~truth & pred).sum(1), (truth & ~pred).sum(1),
                                  (~truth & ~pred).sum(1))
    return RandomDraws(float(values.mean()), float(values.std(ddof=1)) if draws > 1 else 0.0, draws, seed)


def human_pairs(labels: np.ndarray, votes: list[list[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(confident label, single vote, row index) for every non-``same`` vote of every usable row, pooled."""
    truth, pred, rows = [], [], []
    for row, (label, row_votes) in enumerate(zip(labels, votes)):
        for vote in row_votes:
            if vote != "same":
                truth.append(int(label))
                pred.append(1 if vote == "ret" else 0)
                rows.append(row)
    return np.array(truth, dtype=np.int64), np.array(pred, dtype=np.int64), np.array(rows, dtype=np.int64)


def human_row_counts(labels: np.ndarray, votes: list[list[str]]) -> np.ndarray:
    """Per prompt, the confusion counts (tp, fp, fn, tn) of its non-``same`` votes: the bootstrap unit."""
    truth, pred, rows = human_pairs(labels, votes)
    counts = np.zeros((len(labels), 4), dtype=np.int64)
    np.add.at(counts, rows, row_counts(truth, pred))
    return counts


def human_pooled(labels: np.ndarray, votes: list[list[str]]) -> float:
    """Human agreement: macro-F1 of each single annotator vote against the confident label, pooled."""
    truth, pred, _ = human_pairs(labels, votes)
    return macro_f1(truth, pred)
