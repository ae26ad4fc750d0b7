"""Reports: the Markdown for a small fixture run equals a checked-in file; Δ, '-', coverage and plots."""

from __future__ import annotations

import json
import os
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from gill_eval.models import registry
from gill_eval.pipeline import execute, load_pipeline
from test_bench_data import build_fixture_data

EXPECTED = Path(__file__).parent / "expected" / "report_fixture.md"
PIPELINE = """
[pipeline]
title = "Fixture report"
report = "{report}"
baseline = "toy-a"
seeds = "0-1"
scorers = "tiny"

[models.toy-a]
name = "toy"

[models.toy-b]
name = "toy"
options = {{ offset = 7, fail_on = "story 3 " }}

[[run]]
benchmark = "vist"
models = ["toy-a", "toy-b"]
contexts = ["1c", "5c", "5c4i"]
"""


@pytest.fixture
def toy_registered(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("GILL_EVAL_CACHE", str(tmp_path_factory.getbasetemp() / "bench-shared-cache"))
    points = {**registry._entry_points(), "toy": EntryPoint("toy", "test_bench:ToyModel", registry.GROUP)}
    monkeypatch.setattr(registry, "_entry_points", lambda: points)


def _strip_run_line(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("- Run:")).rstrip("\n") + "\n"


def test_fixture_report_matches_expected_markdown(tmp_path, toy_registered):
    build_fixture_data()
    toml = tmp_path / "fixture.toml"
    toml.write_text(PIPELINE.format(report=tmp_path / "out" / "report.md"))
    results, report = execute(load_pipeline(toml))
    text = _strip_run_line(report.read_text())
    if os.environ.get("GILL_EVAL_UPDATE_EXPECTED"):
        EXPECTED.write_text(text)
    assert text == EXPECTED.read_text()
    # structure the expected file must show (so a regenerated file cannot drop it silently)
    assert "| GILL (paper) | 0.581 ± 0.0005 |" in text
    assert "- [1]" in text and "toy takes text only; context 5c4i holds images" in text
    assert "toy-b: 1c 10/12, 5c 10/12, 5c4i -" in text and "†" in text
    assert "Δ vs baseline (toy-a)" in text
    assert (tmp_path / "out" / "vist_clip_similarity.png").read_bytes()[:4] == b"\x89PNG"
    assert {r["status"] for r in results} == {"ok", "unsupported"}


def test_report_cli_json_and_missing_results(tmp_path, toy_registered):
    from typer.testing import CliRunner

    from gill_eval.cli import app

    runner = CliRunner()
    empty = runner.invoke(app, ["report", "--results", str(tmp_path / "none")])
    assert empty.exit_code == 2 and "no result.json" in empty.output
    build_fixture_data()
    toml = tmp_path / "fixture.toml"
    toml.write_text(PIPELINE.format(report=tmp_path / "out" / "report.md"))
    execute(load_pipeline(toml))
    out = runner.invoke(app, ["report", "--baseline", "toy-a", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    [table] = data["tables"]
    row_b = next(r for r in table["rows"] if r["label"] == "toy-b")
    assert row_b["cells"]["clip_similarity/1c"]["n_evaluated"] == 10
    assert row_b["cells"]["clip_similarity/5c4i"]["status"] == "unsupported"
    delta = table["deltas"]["toy-b/clip_similarity/1c"]
    assert delta["n_pairs"] == 10 and delta["ci_low"] <= delta["diff"] <= delta["ci_high"]
