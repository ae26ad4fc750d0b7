"""Aggregates that a reader can defend: per-seed means, seed std, bootstrap and paired bootstrap intervals.

Inputs are per-example rows (example id, seed, value). The paper's "mean ± std" is the mean and the
standard deviation over seeds of the per-seed means. Bootstrap intervals resample *examples* (each with
all its seeds), because the examples, not the seeds, are the sample from the population. The paired
bootstrap compares two models on the same (example, seed) pairs, which is far tighter than comparing two
unpaired intervals. All resampling uses a fixed seed so reports are reproducible.

A set-level metric (FID) has one value per seed, not one per example; ``over_seeds`` gives its mean, seed
std and a Student-t interval over seeds (docs/protocols.md, statistics).
"""

from __future__ import annotations

from dataclasses import dataclass

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

BOOTSTRAP_REPLICATES = 1000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Aggregate:
    """A metric over a set of examples and seeds."""

    mean: float
    std_over_seeds: float | None  # None with a single seed
    ci_low: float | None  # None where no interval can be given (a set-level metric with a single seed)
    ci_high: float | None
    n_examples: int
    n_seeds: int

    def as_dict(self) -> dict[str, float | int | None]:
        return dict(self.__dict__)


def _matrix(rows: pd.DataFrame) -> pd.DataFrame:
    """Examples x seeds table of values; raises if an (example, seed) pair appears twice."""
    if rows.duplicated(["example_id", "seed"]).any():
        dup = rows[rows.duplicated(["example_id", "seed"])].iloc[0]
        raise ValueError(f"duplicate row for example {dup['example_id']!r}, seed {dup['seed']}")
    return rows.pivot(index="example_id", columns="seed", values="value").sort_index()


def per_seed_means(rows: pd.DataFrame) -> pd.Series:
    """Mean value per seed over the examples scored under *every* seed.

    An example that failed under one seed would otherwise leave that seed averaging a different
    (easier or harder) set than the others, mixing model quality with which examples failed; the
    dropped examples show up in the coverage line instead.
    """
    return _matrix(rows).dropna().mean(axis=0).sort_index()


def _bootstrap_means(matrix: np.ndarray, replicates: int, seed: int) -> np.ndarray:
    """Mean over seeds of per-seed means, for resamples of the example rows (NaN-aware).

    Replicates are drawn in blocks so that memory stays bounded (block x examples x seeds floats).
    """
    rng = np.random.default_rng(seed)
    n = matrix.shape[0]
    block = max(1, min(replicates, 2_000_000 // max(1, matrix.size)))
    out = []
    for start in range(0, replicates, block):
        idx = rng.integers(0, n, (min(block, replicates - start), n))
        sample = matrix[idx]  # (B, n, seeds)
        counts = (~np.isnan(sample)).sum(axis=1)
        per_seed = np.where(counts > 0, np.nansum(sample, axis=1) / np.maximum(counts, 1), np.nan)
        out.append(np.nanmean(per_seed, axis=1))
    return np.concatenate(out)


def aggregate(rows: pd.DataFrame, replicates: int = BOOTSTRAP_REPLICATES, seed: int = BOOTSTRAP_SEED) -> Aggregate:
    """Mean and seed-std of per-seed means, and a 95% percentile bootstrap interval over examples.

    Only examples scored under every seed count (see ``per_seed_means``); ``n_examples`` says how many.
    """
    if rows.empty:
        raise ValueError("no rows to aggregate")
    complete = _matrix(rows).dropna()
    if complete.empty:
        raise ValueError("no example was scored under every seed")
    seed_means = complete.mean(axis=0)
    matrix = complete.to_numpy(dtype=np.float64)
    boots = _bootstrap_means(matrix, replicates, seed)
    low, high = np.percentile(boots, [2.5, 97.5])
    return Aggregate(
        mean=float(seed_means.mean()),
        std_over_seeds=float(seed_means.std(ddof=1)) if len(seed_means) > 1 else None,
        ci_low=float(low),
        ci_high=float(high),
        n_examples=int(matrix.shape[0]),
        n_seeds=int(matrix.shape[1]),
    )


def over_seeds(values: Sequence[float], n_examples: int, level: float = 0.95) -> Aggregate:
    """Mean and std of one value per seed, with the Student-t interval for their expectation.

    For a set-level metric such as FID, whose value per seed is computed from that seed's whole set of
    images: the seeds are independent draws, so the interval covers the metric's expectation at this
    sample size at its nominal rate (resampling images with replacement would not: duplicates inflate
    FID). A single seed gives no spread and no interval (None).
    """
    vals = np.asarray(values, dtype=np.float64)
    if vals.ndim != 1 or len(vals) == 0:
        raise ValueError("no per-seed values to aggregate")
    mean = float(vals.mean())
    if len(vals) == 1:
        return Aggregate(mean, None, None, None, n_examples, 1)
    std = float(vals.std(ddof=1))
    half = float(scipy_stats.t.ppf(0.5 + level / 2, len(vals) - 1)) * std / np.sqrt(len(vals))
    return Aggregate(mean, std, mean - half, mean + half, n_examples, len(vals))


@dataclass(frozen=True)
class PairedDifference:
    """Model A minus model B on the (example, seed) pairs both have.

    ``n_pairs`` counts the pairs the difference is computed from: shared examples scored by both models
    under every seed, times the seeds (an example missing under one seed is left out, as in ``aggregate``).
    """

    diff: float
    ci_low: float
    ci_high: float
    n_pairs: int

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def paired_difference(
    rows_a: pd.DataFrame, rows_b: pd.DataFrame, replicates: int = BOOTSTRAP_REPLICATES, seed: int = BOOTSTRAP_SEED
) -> PairedDifference:
    """Mean difference A - B over shared (example, seed) pairs, with a paired bootstrap over examples."""
    merged = rows_a.merge(rows_b, on=["example_id", "seed"], suffixes=("_a", "_b"))
    if merged.empty:
        raise ValueError("the two models share no (example, seed) pair")
    merged = merged.assign(value=merged["value_a"] - merged["value_b"])[["example_id", "seed", "value"]]
    agg = aggregate(merged, replicates, seed)
    return PairedDifference(diff=agg.mean, ci_low=agg.ci_low, ci_high=agg.ci_high,
                            n_pairs=agg.n_examples * agg.n_seeds)
