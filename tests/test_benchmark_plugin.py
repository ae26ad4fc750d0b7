"""A third-party benchmark registered through an entry point is listed, runs and appears in the report.

The benchmark lives in ``tests/plugin_pkg`` (``gill_eval_demo_benchmark.py``, one module, and one entry
point in its pyproject), next to the demo model it is run with. ``install_plugin`` lays the package out as
an installed distribution; discovery is the real ``importlib.metadata`` path in a ``gill-eval`` subprocess.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gill_eval.bench import registry
from gill_eval.errors import ConfigError
from gill_eval.models.base import example_seed
from gill_eval.report.generated import iter_generated
from test_bench_data import build_fixture_data
from test_registry_plugin import _run, expected_noise, install_plugin

PIPELINE = """
[pipeline]
title = "plugin run"
report = "{report}"
seeds = "0-1"
scorers = "tiny"

[models.noise]
name = "demo-noise"
options = {{ size = 32 }}

[[run]]
benchmark = "demo-captions"
models = ["noise"]
"""


def test_plugin_benchmark_is_listed_runs_and_is_reported(tmp_path: Path) -> None:
    plugin = install_plugin(tmp_path / "site")
    listed = _run(["bench", "list", "--json"], plugin, tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {row["benchmark"]: row for row in json.loads(listed.stdout)}
    assert list(rows) == ["vist", "visdial", "vist-retrieval", "cc3m-fid", "coco-fid", "coco-caption", "vqav2",
                          "demo-captions"]
    assert rows["demo-captions"]["contexts"] == ["caption"] and rows["demo-captions"]["protocol_version"] == 3

    build_fixture_data()  # the COCO fixture: captions 900..903 of photos 0..3, all five photos stored
    report = tmp_path / "out" / "plugin.md"
    (tmp_path / "plugin.toml").write_text(PIPELINE.format(report=report))
    ran = _run(["run", str(tmp_path / "plugin.toml"), "--json"], plugin, tmp_path)
    assert ran.returncode == 0, ran.stderr
    [result] = json.loads(ran.stdout)["results"]
    assert result["benchmark"] == "demo-captions" and result["status"] == "ok"
    assert (result["protocol_version"], result["generation_version"]) == (3, 1)  # declared by the plugin
    assert result["n_expected"] == 4 * 2  # 4 captions with a stored photo x 2 seeds
    assert {m: v["n_evaluated"] for m, v in result["metrics"].items()} == {"clip_similarity": 8, "lpips": 8}

    generated = list(iter_generated(result))
    assert [(g.seed, g.example_id) for g in generated] == [(s, str(c)) for s in (0, 1) for c in range(900, 904)]
    for row in generated:  # oracle: the demo model's noise from each (seed, caption id) pair
        pixels = np.asarray(Image.open(__import__("io").BytesIO(row.png)).convert("RGB"))
        assert np.array_equal(pixels, expected_noise(example_seed(row.seed, row.example_id), 32))

    # the same run by name from the CLI (`bench run`, what a rerun hint for a plugin names): nothing is
    # generated again and the scores are the same
    again = _run(["bench", "run", "demo-captions", "--model", "demo-noise", "--model-opt", "size=32", "--context",
                  "caption", "--seeds", "0-1", "--scorers", "tiny", "--json"], plugin, tmp_path)
    assert again.returncode == 0, again.stderr
    [rerun] = json.loads(again.stdout)
    assert rerun["generation"] == result["generation"] and rerun["metrics"] == result["metrics"]

    text = report.read_text()
    assert "### Demo. COCO caption to image (a plugin benchmark)" in text
    assert "| noise | " in text and "noise: 8/8" in text


def test_broken_and_unknown_benchmarks_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = install_plugin(tmp_path / "site")
    info = next(site.glob("*.dist-info"))
    with (info / "entry_points.txt").open("a") as points:
        points.write("demo-missing = no_such_module_xyz:BENCHMARK\ndemo-wrong = gill_eval_demo_benchmark:BENCHMARK\n")
    monkeypatch.syspath_prepend(str(site))
    assert "demo-captions" in registry.benchmark_names()
    assert "demo-missing" not in registry.benchmark_names()  # one broken plugin hides no other benchmark
    with pytest.raises(ConfigError, match=r"benchmark 'demo-missing' .* failed to import: ModuleNotFoundError"):
        registry.benchmark("demo-missing")
    with pytest.raises(ConfigError, match=r"declares name 'demo-captions'"):
        registry.benchmark("demo-wrong")
    with pytest.raises(ConfigError, match=r"unknown benchmark 'vist-retreival' \(did you mean 'vist-retrieval'"):
        registry.benchmark("vist-retreival")
    sys.modules.pop("gill_eval_demo_benchmark", None)
