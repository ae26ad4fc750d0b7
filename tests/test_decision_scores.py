"""Macro-F1, baselines, sweeps and bootstrap intervals against independent oracles (no data files)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import f1_score

from gill_eval.decision import baselines
from gill_eval.decision.scores import bootstrap_ci, macro_f1, macro_f1_from_counts, row_counts
from gill_eval.decision.sweep import probability_thresholds, score_thresholds, sweep


def test_macro_f1_hand_computed() -> None:
    # ret: TP 2, FP 1, FN 1 -> F1 4/6; gen: TP 4, FP 1, FN 1 -> 8/10; macro (2/3 + 4/5) / 2 = 11/15.
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    p = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    assert macro_f1(y, p) == pytest.approx(11 / 15, abs=1e-12)
    assert macro_f1_from_counts(2, 1, 1, 4) == pytest.approx(11 / 15, abs=1e-12)
    # Always retrieve on 110 ret / 201 gen: ret F1 = 220/(220+201), gen F1 = 0.
    y = np.array([1] * 110 + [0] * 201)
    assert baselines.always(y, 1) == pytest.approx(220 / 421 / 2, abs=1e-12)
    assert baselines.always(y, 0) == pytest.approx(402 / (402 + 110) / 2, abs=1e-12)


def test_vectorised_f1_equals_sklearn() -> None:
    rng = np.random.default_rng(1)
    for n in (1, 2, 5, 40):
        for _ in range(30):
            y = rng.integers(0, 2, n)
            p = rng.integers(0, 2, n) if rng.random() < 0.8 else np.full(n, rng.integers(0, 2))
            c = row_counts(y, p).sum(0)
            expected = f1_score(y, p, labels=[0, 1], average="macro", zero_division=0)
            assert macro_f1_from_counts(*c) == pytest.approx(expected, abs=1e-12)
            assert macro_f1(y, p) == pytest.approx(expected, abs=1e-12)


def test_random_expected_equals_enumeration() -> None:
    """Oracle: every one of the 2^n prediction vectors, weighted by its probability."""
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = 0.3
    exact = 0.0
    for pred in itertools.product([0, 1], repeat=len(y)):
        pred = np.array(pred)
        weight = p ** pred.sum() * (1 - p) ** (len(y) - pred.sum())
        exact += weight * f1_score(y, pred, labels=[0, 1], average="macro", zero_division=0)
    assert baselines.random_expected(y, p) == pytest.approx(exact, abs=1e-12)
    draws = baselines.random_draws(y, p, draws=2000, seed=3)
    first = (np.random.default_rng(3).random(len(y)) < p).astype(int)  # the first draw, by hand
    assert baselines.random_draws(y, p, draws=1, seed=3).mean == pytest.approx(macro_f1(y, first))
    assert abs(draws.mean - exact) < 4 * draws.std / np.sqrt(2000)
    assert baselines.random_draws(y, p, draws=50, seed=3) == baselines.random_draws(y, p, draws=50, seed=3)


def test_human_pooled_hand_case() -> None:
    labels = np.array([1, 0])
    votes = [["ret", "ret", "gen", "same"], ["gen", "gen", "ret", "gen", "same"]]
    # pooled pairs: truth 1,1,1 / 0,0,0,0 ; votes 1,1,0 / 0,0,1,0  -> ret TP2 FP1 FN1, gen TP3 FP1 FN1
    expected = (4 / 6 + 6 / 8) / 2
    assert baselines.human_pooled(labels, votes) == pytest.approx(expected, abs=1e-12)
    counts = baselines.human_row_counts(labels, votes)
    assert counts.tolist() == [[2, 0, 1, 0], [0, 1, 0, 3]]


def test_sweep_ends_and_monotone_predictions() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    scores = np.clip(0.3 * y + rng.normal(0.35, 0.2, 200), 0.001, 0.999)
    for grid in (probability_thresholds(25), score_thresholds(scores, 25)):
        result = sweep(y, scores, grid)
        assert result.f1[0] == pytest.approx(baselines.always(y, 1))   # below every score: all ret
        assert result.f1[-1] == pytest.approx(baselines.always(y, 0))  # at/above every score: all gen
        n_ret = [int((scores > t).sum()) for t in grid]
        assert n_ret == sorted(n_ret, reverse=True)
        assert result.min == min(result.f1) and result.max == max(result.f1)
        assert result.f1[grid.tolist().index(result.best_threshold)] == result.max
        for t, f in zip(grid, result.f1):
            assert f == pytest.approx(f1_score(y, (scores > t).astype(int), average="macro", zero_division=0))
    assert sweep(y, scores, probability_thresholds(5)).at_half == pytest.approx(
        f1_score(y, (scores > 0.5).astype(int), average="macro"))


def test_bootstrap_ci() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.where(rng.random(300) < 0.8, y, 1 - y)
    counts = row_counts(y, p)
    lo, hi = bootstrap_ci(counts, 500, seed=1)
    assert lo < macro_f1(y, p) < hi
    assert 0.02 < hi - lo < 0.2
    assert bootstrap_ci(counts, 500, seed=1) == (lo, hi)
    perfect = row_counts(y, y)
    assert bootstrap_ci(perfect, 100, seed=0) == (1.0, 1.0)
