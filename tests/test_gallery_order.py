"""Gallery pages and the report's links to them order contexts naturally: r1, r2, r5, r10 (not r1, r10, r2, r5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gill_eval.report import gallery
from gill_eval.report.gallery import Page, build_pages, natural_key


def test_natural_key_reads_digit_runs_as_numbers() -> None:
    assert sorted(["r10", "r1", "r5", "r2"], key=natural_key) == ["r1", "r2", "r5", "r10"]
    assert sorted(["5c4i", "10c", "1c", "5c"], key=natural_key) == ["1c", "5c", "5c4i", "10c"]
    assert sorted(["a²", "a1", "a"], key=natural_key) == ["a", "a1", "a²"]  # only ASCII digits are numbers


def test_pages_follow_natural_context_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(gallery, "is_generation_result", lambda result: True)
    monkeypatch.setattr(gallery, "generation_page", lambda group, files: Page(
        f"{group[0]['benchmark']}-{group[0]['context']}", "", "generation", group[0]["benchmark"], group[0]["context"]))
    results = [{"benchmark": benchmark, "context": context, "status": "ok"}
               for benchmark, context in [("visdial", "r10"), ("vist", "5c4i"), ("visdial", "r1"), ("vist", "1c"),
                                          ("visdial", "r5"), ("vist", "5c"), ("visdial", "r2")]]
    pages = build_pages(results, tmp_path, files=None)
    assert [(p.benchmark, p.context) for p in pages] == [
        ("vist", "1c"), ("vist", "5c"), ("vist", "5c4i"),
        ("visdial", "r1"), ("visdial", "r2"), ("visdial", "r5"), ("visdial", "r10")]
