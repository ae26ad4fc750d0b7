"""The report keeps runs of one model label with other options apart (docs/python-api.md, "Which results a
report shows"): two real tiny runs of ``tiny-sd`` on VIST that differ only in ``text_cleanup``, and two
Table 7 runs that differ only in their prompt template, are two labelled rows each, never one replacing
the other; a later run with the same options does replace the earlier one."""

from __future__ import annotations

import copy

import pytest

from gill_eval.bench import api
from gill_eval.bench.results import load_results
from gill_eval.bench.scorers import ScorerSpec
from gill_eval.report.render import latest_results, render_report
from test_bench_data import build_fixture_data

SCORER = ScorerSpec(preset="tiny", device="cpu")


@pytest.fixture
def shared_cache(monkeypatch, tmp_path_factory):
    """Tiny scorer networks built once for this module's tests."""
    monkeypatch.setenv("GILL_EVAL_CACHE", str(tmp_path_factory.getbasetemp() / "cleanup-report-cache"))


def _mean(result: dict, metric: str) -> str:
    return f"{result['metrics'][metric]['aggregate']['mean']:.4f}"


def test_sd_runs_with_another_text_cleanup_are_two_rows(shared_cache) -> None:
    build_fixture_data()
    runs = {cleanup: api.run("vist", "tiny-sd", {"steps": "1", "text_cleanup": cleanup, "device": "cpu"}, ["1c"], [0],
                             scorer=SCORER)[0] for cleanup in ("gill", "none")}
    assert runs["gill"]["_dir"] != runs["none"]["_dir"]  # the writer keeps both (the model fingerprints differ)
    results = load_results()
    assert len(results) == 2
    markdown, data = render_report(results)
    rows = {row["label"]: row for row in next(t for t in data["tables"] if t["table"] == "table1")["rows"]}
    assert set(rows) == {"tiny-sd [text_cleanup=gill]", "tiny-sd [text_cleanup=none]"}
    for cleanup, result in runs.items():
        cell = rows[f"tiny-sd [text_cleanup={cleanup}]"]["cells"]["clip_similarity/1c"]
        assert cell["mean"] == pytest.approx(result["metrics"]["clip_similarity"]["aggregate"]["mean"])
        assert f"| tiny-sd [text_cleanup={cleanup}] | {_mean(result, 'clip_similarity')}" in markdown

    # a later run with the same options replaces the earlier one; the other options' row stays
    later = copy.deepcopy(next(r for r in results if r["model"]["fingerprint"]["options"]["text_cleanup"] == "none"))
    later["run"]["time"] = "9999-01-01T00:00:00"
    later["metrics"]["clip_similarity"]["aggregate"]["mean"] = 0.123456
    kept = latest_results([*results, later])
    assert len(kept) == 2
    by_label = {r["model"]["label"]: r for r in kept}
    assert by_label["tiny-sd [text_cleanup=none]"]["metrics"]["clip_similarity"]["aggregate"]["mean"] == 0.123456
    # one options set alone keeps its plain label (nothing to tell apart)
    alone = latest_results([r for r in results if r["model"]["fingerprint"]["options"]["text_cleanup"] == "gill"])
    assert [r["model"]["label"] for r in alone] == ["tiny-sd"]


def test_table7_runs_with_another_prompt_template_are_two_rows(shared_cache, tmp_path) -> None:
    from gill_eval.quickstart import run_quickstart, step_prepare_coco, step_prepare_vqav2

    run_quickstart(tmp_path / "root", [("coco", step_prepare_coco), ("vqav2", step_prepare_vqav2)])
    templates = {"plain": "Q: {question} A:", "short": "{question}"}
    runs = {name: api.run("vqav2", "vqa-prior", {}, None, [0], scorer=SCORER, bench_options={"template": t})[0]
            for name, t in templates.items()}
    assert runs["plain"]["_dir"] != runs["short"]["_dir"]
    markdown, data = render_report(load_results())
    rows = {row["label"] for row in next(t for t in data["tables"] if t["table"] == "table7")["rows"]}
    assert rows == {"vqa-prior [template=Q: {question} A:]", "vqa-prior [template={question}]"}
    for label in rows:
        assert f"| {label} |" in markdown
