"""Scoring inputs prepared by worker threads (``metrics.inputs``) change nothing: the same scores, bit for bit,
with no workers (everything in the caller's thread, the order of the original loops) and with several, for
the similarity path (CLIP similarity, LPIPS) and the FID path (FID, KID, CLIPScore from one read)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from gill_eval.bench.caption_fid import coco_fid
from gill_eval.bench.results import SCORES_FILE
from gill_eval.bench.runner import RunOptions, run_benchmark
from gill_eval.bench.scorers import Scorers, ScorerSpec
from gill_eval.bench.vist import VistBenchmark
from gill_eval.metrics import fid
from gill_eval.metrics.inputs import WORKERS_ENV, ordered_map
from test_bench import ToyModel
from test_bench_data import build_fixture_data


def test_ordered_map_keeps_order_and_bounds_what_it_reads_ahead():
    pulled = itertools.count()
    lock = threading.Lock()

    def items():
        for i in range(50):
            next(pulled)
            yield i

    def slow_square(i: int) -> int:
        time.sleep(0.002 * (i % 3))  # finish out of order
        with lock:
            return i * i

    gen = ordered_map(slow_square, items(), workers=3)
    assert next(gen) == 0
    assert next(pulled) <= 2 * 3 + 1  # at most 2 x workers items taken before the first result
    assert list(gen) == [i * i for i in range(1, 50)]


@pytest.fixture
def shared_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GILL_EVAL_CACHE", str(tmp_path_factory.getbasetemp() / "bench-shared-cache"))


def _score(bench, context: str, monkeypatch, workers: int) -> tuple[pd.DataFrame, str]:
    """Score (generating once, then from the generation folder) with ``workers`` threads, every feature cache gone."""
    monkeypatch.setenv(WORKERS_ENV, str(workers))
    for cached in fid.reference_cache_dir().glob("*"):
        cached.unlink()
    result = run_benchmark(bench, ToyModel(), context, RunOptions((0, 1)), Scorers(ScorerSpec(preset="tiny")))
    for cached in Path(result["generation"]["dir"]).glob("inception-*.npy"):
        cached.unlink()  # the next run extracts the generated features again
    scores = pd.read_parquet(Path(result["_dir"]) / SCORES_FILE)
    return scores, json.dumps(result["metrics"], sort_keys=True)


@pytest.mark.parametrize("which", ["vist", "coco-fid"])
def test_worker_count_changes_no_score(which, shared_cache, monkeypatch):
    build_fixture_data()
    make = (lambda: VistBenchmark()) if which == "vist" else (lambda: coco_fid(None))
    context = "5c" if which == "vist" else "captions"
    base_scores, base_metrics = _score(make(), context, monkeypatch, 0)
    assert base_scores["value"].notna().sum() > 0
    scores, metrics = _score(make(), context, monkeypatch, 3)
    pd.testing.assert_frame_equal(scores, base_scores, check_exact=True)
    assert metrics == base_metrics
