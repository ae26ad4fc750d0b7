"""Generation across machines: ``--shard slurm`` (Slurm array tasks), torchrun ranks (gloo, real
processes), ``bench status``, and scoring once every shard is done: all equal to one process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from gill_eval.bench import api
from gill_eval.bench.results import SCORES_FILE
from gill_eval.bench.scorers import ScorerSpec
from gill_eval.cli import app
from gill_eval.errors import ConfigError
from gill_eval.store import ShardSpec, iter_rows, resolve_shard_spec
from test_bench_data import build_fixture_data

SEEDS = [0, 1]
BENCH = ["bench", "vist", "--model", "tiny-sd", "--model-opt", "steps=2", "--seeds", "0-1", "--scorers", "tiny",
         "--batch-size", "2"]
_SLURM = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_STEP")


@pytest.fixture
def shared_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tiny SD and the tiny scorer networks are built once per session, not once per test."""
    cache = tmp_path_factory.getbasetemp() / "bench-shared-cache"
    monkeypatch.setenv("GILL_EVAL_CACHE", str(cache))
    return cache


def _root(monkeypatch: pytest.MonkeyPatch, path: Path) -> Path:
    monkeypatch.setenv("GILL_EVAL_DATA", str(path))
    build_fixture_data(n_stories=3)  # 3 eligible stories x 2 seeds: one unit per seed
    return path


def _one_process(contexts: list[str]) -> dict[str, pd.DataFrame]:
    results = api.run("vist", "tiny-sd", {"steps": 2}, contexts, SEEDS, batch_size=2,
                      scorer=ScorerSpec(preset="tiny"))
    return {r["context"]: _scores_of(Path(r["_dir"])) for r in results}


def _scores_of(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / SCORES_FILE).sort_values(["metric", "seed", "example_id"], ignore_index=True)


def _results(root: Path) -> dict[str, pd.DataFrame]:
    found = {}
    for path in (root / "results" / "vist").rglob(SCORES_FILE):
        found[json.loads((path.parent / "result.json").read_text())["context"]] = _scores_of(path.parent)
    return found


def _images(root: Path, context: str) -> dict[tuple[str, int], bytes]:
    [folder] = (root / "generations" / "vist").glob(f"*/{context}-*")
    return {(r["example_id"], r["seed"]): r["image"] for r in iter_rows(sorted(folder.glob("*.parquet")))}


@pytest.mark.parametrize(("task", "first", "count", "step", "want"), [
    ("0", "0", "4", None, (0, 4)), ("3", "1", "4", None, (2, 4)), ("12", "0", "4", "4", (3, 4)),
])
def test_slurm_array_task_is_its_position_in_the_array(monkeypatch, task, first, count, step, want) -> None:
    for var, value in zip(_SLURM, (task, first, count, step), strict=True):
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, value)
    assert resolve_shard_spec("slurm") == ShardSpec(*want)
    monkeypatch.setenv("WORLD_SIZE", "2")  # a torchrun of 2 ranks inside each array task
    monkeypatch.setenv("RANK", "1")
    assert resolve_shard_spec("slurm") == ShardSpec(want[0] * 2 + 1, want[1] * 2)


def test_slurm_shard_outside_an_array_or_uneven_is_a_one_line_error(monkeypatch) -> None:
    for var in _SLURM:
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match="SLURM_ARRAY_TASK_ID.*not a Slurm array task"):
        resolve_shard_spec("slurm")
    for var, value in zip(_SLURM, ("5", "0", "4", "2"), strict=True):
        monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match="task 5 is not evenly spaced"):
        resolve_shard_spec("slurm")


def test_slurm_array_tasks_then_status_then_scoring_equal_one_process(tmp_path, shared_cache, monkeypatch) -> None:
    _root(monkeypatch, tmp_path / "one")
    want = _one_process(["1c"])
    root = _root(monkeypatch, tmp_path / "slurm")
    runner = CliRunner()
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")  # sbatch --array=1-2
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")  # the second task runs first
    out = runner.invoke(app, [*BENCH, "--context", "1c", "--shard", "slurm", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout) == [{"status": "pending"}]

    status = runner.invoke(app, ["bench", "status", "--json"])  # seeds and N as the worker recorded them
    assert status.exit_code == 0, status.output
    [row] = json.loads(status.stdout)
    assert (row["context"], row["seeds"], row["units"], row["done"], row["complete"], row["to_score"]) == (
        "1c", [0, 1], 2, 1, False, False)
    assert [(s["shard"], s["done"], s["missing_units"]) for s in row["shards"]] == [
        ("0/2", 0, ["seed0-block00000"]), ("1/2", 1, [])]
    assert row["next"] == "waiting for 1 unit(s) of shard(s) 0/2" and not row["scored"]
    text = " ".join(runner.invoke(app, ["bench", "status"]).stderr.split())
    assert "vist 1c tiny-sd seeds [0, 1]: 1/2 units (0/2 0/1, 1/2 1/1); waiting for 1 unit(s)" in text
    [row] = json.loads(runner.invoke(app, ["bench", "status", "--shards", "1", "--json"]).stdout)
    assert [(s["shard"], s["done"], s["missing"]) for s in row["shards"]] == [("0/1", 1, 1)]

    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")  # the last task to finish scores
    out = runner.invoke(app, [*BENCH, "--context", "1c", "--shard", "slurm", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)[0]["status"] == "ok"
    [row] = json.loads(runner.invoke(app, ["bench", "status", "--json"]).stdout)
    assert (row["seeds"], row["done"], row["complete"], row["to_score"], row["next"]) == ([0, 1], 2, True, False, "scored")
    assert [r["seeds"] for r in row["scored"]] == [[0, 1]]
    pd.testing.assert_frame_equal(_results(root)["1c"], want["1c"])


@pytest.mark.slow
def test_torchrun_two_ranks_gloo_equal_one_process(tmp_path, shared_cache, monkeypatch) -> None:
    contexts = ["1c", "5c"]
    one = _root(monkeypatch, tmp_path / "one")
    want = _one_process(contexts)
    two = _root(monkeypatch, tmp_path / "two")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "gill_eval", *BENCH, "--context", ",".join(contexts), "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GILL_EVAL_DATA": str(two), "GILL_EVAL_CACHE": str(shared_cache)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(re.findall(r'"status": "pending"', proc.stdout)) == 2  # rank 1: rank 0 scores both contexts
    assert len(re.findall(r'"status": "ok"', proc.stdout)) == 2
    got = _results(two)
    assert sorted(got) == contexts
    for context in contexts:
        pd.testing.assert_frame_equal(got[context], want[context])
        assert _images(two, context) == _images(one, context)  # the same PNG bytes
    workers = {json.loads(p.read_text())["worker"] for p in (two / "generations").rglob("_done/*.json")}
    assert workers == {"0/2", "1/2"}
    rows = api.status()
    assert [(r["context"], r["complete"], r["to_score"], len(r["shards"])) for r in rows] == [
        ("1c", True, False, 2), ("5c", True, False, 2)]
