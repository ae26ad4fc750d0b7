"""Pipeline files: strict validation, and the shipped files parse."""

from __future__ import annotations

from pathlib import Path

import pytest

from gill_eval.errors import ConfigError, InputError
from gill_eval.pipeline import load_pipeline
from gill_eval.quickstart import quickstart_pipeline, without_missing_packages

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"


@pytest.mark.parametrize("name", ["table1", "table2", "table3", "table5", "table8"])
def test_shipped_pipelines_parse(name):
    pipe = load_pipeline(PIPELINES / f"{name}.toml")
    assert pipe.runs and pipe.report.name.endswith(".md")


def test_quickstart_matrix_is_the_packaged_toml_only():
    """gill_eval/quickstart.toml (package data) is the quickstart's one description of its matrix."""
    packaged = quickstart_pipeline(Path("out/quickstart.md"))
    assert packaged.report == Path("out/quickstart.md") and packaged.seeds == [0, 1] and packaged.scorers == "tiny"
    assert [(r["benchmark"], r["models"]) for r in packaged.runs] == [
        ("vist", ["tiny-sd", "tiny-glide", "tiny-gill"]), ("visdial", ["tiny-sd", "tiny-glide", "tiny-gill"]),
        ("coco-fid", ["tiny-sd", "tiny-glide"]), ("cc3m-fid", ["tiny-sd"]),
        ("vist-retrieval", ["tiny-clip-retrieval", "tiny-gill"]), ("coco-caption", ["tiny-gill", "clip-nn"]),
        ("vqav2", ["tiny-gill", "vqa-prior"])]
    assert not (PIPELINES / "quickstart.toml").exists()  # no second copy to drift


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[pipeline]\nreport = "r.md"\nsedes = "0"\n[[run]]\nbenchmark = "vist"\n', "unknown key(s) sedes"),
        ('[pipeline]\nreport = "r.md"\n[[run]]\nbenchmark = "vits"\n', "benchmark 'vits'"),
        ('[pipeline]\nreport = "r.md"\n[[run]]\nbenchmark = "vist"\nmodels = ["sd"]\n', "model 'sd' is not declared"),
        ('[pipeline]\nreport = "r.md"\n', "no [[run]] entries"),
        ('[pipeline]\n[[run]]\nbenchmark = "vist"\n', "missing key 'report'"),
    ],
)
def test_bad_pipeline_files_name_the_key(tmp_path, text, message):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        load_pipeline(path)


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("[pipeline\n")
    with pytest.raises(InputError, match="p.toml: invalid TOML"):
        load_pipeline(path)


def test_quickstart_leaves_out_models_whose_package_is_missing(monkeypatch):
    import importlib.util
    import sys

    full = quickstart_pipeline(Path("reports/quickstart.md"))
    assert [r["models"] for r in full.runs if r["benchmark"] in ("vist", "visdial", "coco-fid")] == [
        ["tiny-sd", "tiny-glide", "tiny-gill"], ["tiny-sd", "tiny-glide", "tiny-gill"], ["tiny-sd", "tiny-glide"]]
    monkeypatch.setitem(sys.modules, "regex", None)  # as if GLIDE's tokenizer dependency were not installed
    kept, left_out = without_missing_packages(full)
    assert left_out == ["tiny-glide"] and "tiny-glide" not in kept.models
    assert all("tiny-glide" not in r["models"] for r in kept.runs) and len(kept.runs) == len(full.runs)
    assert kept.preamble[: len(full.preamble)] == full.preamble
    assert "pip install 'gill-eval[glide]'" in kept.preamble[-1]
    monkeypatch.delitem(sys.modules, "regex")
    assert importlib.util.find_spec("regex") is not None  # a dependency of the test environment
    assert without_missing_packages(full) == (full, [])  # installed: nothing is left out
