"""The harness: resumable generation, worker- and batch-invariant scores, capabilities and coverage."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gill_eval.bench.results import SCORES_FILE
from gill_eval.bench.runner import RunOptions, run_benchmark
from gill_eval.bench.scorers import Scorers, ScorerSpec
from gill_eval.bench.vist import VistBenchmark
from gill_eval.bench.visdial import VisDialBenchmark
from gill_eval.models.base import GENERATE, Model, join_captions
from gill_eval.store import ShardSpec
from test_bench_data import build_fixture_data


@dataclasses.dataclass
class ToyOptions:
    offset: int = 0
    fail_on: str = ""


class ToyModel(Model):
    """A deterministic text-to-image toy: the image is drawn from an RNG seeded by (seed, caption text)."""

    name = "toy"
    capabilities = frozenset({GENERATE})
    Options = ToyOptions

    def __init__(self, options: ToyOptions | None = None) -> None:
        super().__init__(options)
        self.generated = 0

    def generate(self, contexts, seeds):
        self.check_generate_args(contexts, seeds)
        images = []
        for context, seed in zip(contexts, seeds, strict=True):
            text = join_captions(context)
            if self.options.fail_on and self.options.fail_on in text:
                raise RuntimeError(f"toy cannot draw {self.options.fail_on!r}")
            rng = np.random.default_rng([seed % 2**32, sum(map(ord, text)) + self.options.offset])
            small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            images.append(Image.fromarray(small).resize((32, 32), Image.Resampling.BILINEAR))
        self.generated += len(contexts)
        return images


@pytest.fixture
def shared_cache(tmp_path_factory, monkeypatch):
    """Tiny scorer networks are built once per session, not once per test."""
    cache = tmp_path_factory.getbasetemp() / "bench-shared-cache"
    monkeypatch.setenv("GILL_EVAL_CACHE", str(cache))
    return cache


def _scores(result: dict) -> pd.DataFrame:
    return pd.read_parquet(Path(result["_dir"]) / SCORES_FILE).sort_values(["metric", "seed", "example_id"], ignore_index=True)


def test_scores_do_not_depend_on_batch_size_or_workers_and_rerun_is_incremental(shared_cache):
    build_fixture_data()
    bench, scorers = VistBenchmark(), Scorers(ScorerSpec(preset="tiny"))
    model = ToyModel()
    base = run_benchmark(bench, model, "5c", RunOptions((0, 1), None, 8), scorers)
    assert model.generated == 12 and base["metrics"]["clip_similarity"]["n_evaluated"] == 12
    # a rerun generates nothing
    again = run_benchmark(bench, model, "5c", RunOptions((0, 1), None, 8), scorers)
    assert model.generated == 12
    pd.testing.assert_frame_equal(_scores(base), _scores(again))
    # batch size 1, split across two workers, in a fresh data root
    os.environ["GILL_EVAL_DATA"] = str(Path(os.environ["GILL_EVAL_DATA"]) / "second")
    build_fixture_data()
    other = ToyModel()
    first = run_benchmark(VistBenchmark(), other, "5c", RunOptions((0, 1), ShardSpec(0, 2), 1), scorers)
    assert first is None  # worker 0 alone cannot score: units of worker 1 are pending
    split = run_benchmark(VistBenchmark(), other, "5c", RunOptions((0, 1), ShardSpec(1, 2), 1), scorers)
    assert other.generated == 12
    pd.testing.assert_frame_equal(_scores(base), _scores(split))


def test_capability_missing_is_reported_not_run(shared_cache):
    build_fixture_data()
    model = ToyModel()
    result = run_benchmark(VistBenchmark(), model, "5c4i", RunOptions((0,)), Scorers(ScorerSpec(preset="tiny")))
    assert result["status"] == "unsupported" and "takes text only" in result["reason"]
    assert model.generated == 0


def test_failures_are_counted_not_hidden(shared_cache):
    build_fixture_data()
    model = ToyModel(ToyOptions(fail_on="story 3 "))
    result = run_benchmark(VistBenchmark(), model, "1c", RunOptions((0, 1), None, 8), Scorers(ScorerSpec(preset="tiny")))
    assert result["n_expected"] == 12
    assert result["metrics"]["lpips"]["n_evaluated"] == 10 and result["failures"]["count"] == 2
    assert "toy cannot draw" in result["failures"]["first_error"]
    rows = _scores(result)
    failed = rows[rows["status"] != "success"]
    assert set(failed["example_id"]) == {"5003"} and failed["value"].isna().all()


def test_visdial_rounds_build_distinct_inputs(shared_cache):
    build_fixture_data()
    bench = VisDialBenchmark()
    one, ten = bench.job("r1"), bench.job("r10")
    assert one.example_ids == ten.example_ids == [str(185000 + d) for d in range(4)]
    text1, text10 = one.build_contexts(["185000"])[0][0], ten.build_contexts(["185000"])[0][0]
    assert text1 == "Q: is there a thing 0?\nA: yes 0" and text10.count("\n") == 19 and "caption" not in text10


# ----------------------------------------------------------------------- real processes (tiny-sd)

_GILL_EVAL = str(Path(sys.executable).parent / "gill-eval")
_CMD = [_GILL_EVAL, "bench", "vist", "--model", "tiny-sd", "--model-opt", "steps=2",
        "--context", "1c", "--scorers", "tiny", "--batch-size", "1", "--json"]


def _env(data: Path, cache: Path) -> dict[str, str]:
    return {**os.environ, "GILL_EVAL_DATA": str(data), "GILL_EVAL_CACHE": str(cache)}


def _cli_scores(data: Path) -> pd.DataFrame:
    [path] = list((data / "results").rglob(SCORES_FILE))
    return pd.read_parquet(path).sort_values(["metric", "seed", "example_id"], ignore_index=True)


@pytest.mark.slow
def test_two_processes_and_kill_resume_equal_one_process(tmp_path, shared_cache, monkeypatch):
    roots = {name: tmp_path / name for name in ("one", "two", "killed")}
    for root in roots.values():
        monkeypatch.setenv("GILL_EVAL_DATA", str(root))
        build_fixture_data(n_stories=3)
    seeds = ["--seeds", "0-3"]
    subprocess.run(_CMD + seeds, env=_env(roots["one"], shared_cache), check=True, capture_output=True, timeout=300)
    workers = [subprocess.Popen(_CMD + seeds + ["--shard", f"{i}/2"], env=_env(roots["two"], shared_cache),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    for w in workers:
        w.communicate(timeout=300)
        assert w.returncode == 0
    if not list((roots["two"] / "results").rglob(SCORES_FILE)):  # both finished together: score explicitly
        [gen] = list((roots["two"] / "generations").glob("vist/*/1c-*"))
        subprocess.run([_GILL_EVAL, "bench", "score", str(gen), "--seeds", "0-3", "--scorers", "tiny"],
                       env=_env(roots["two"], shared_cache), check=True, capture_output=True, timeout=300)
    pd.testing.assert_frame_equal(_cli_scores(roots["one"]), _cli_scores(roots["two"]))

    proc = subprocess.Popen(_CMD + seeds, env=_env(roots["killed"], shared_cache), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not list((roots["killed"] / "generations").rglob("_done/*.json")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    markers = list((roots["killed"] / "generations").rglob("_done/*.json"))
    assert 1 <= len(markers) < 4, "the kill should land between the first and the last unit"
    assert not list((roots["killed"] / "results").rglob(SCORES_FILE))
    subprocess.run(_CMD + seeds, env=_env(roots["killed"], shared_cache), check=True, capture_output=True, timeout=300)
    pd.testing.assert_frame_equal(_cli_scores(roots["one"]), _cli_scores(roots["killed"]))
