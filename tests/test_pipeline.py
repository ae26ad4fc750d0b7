"""Pipeline files: strict validation, and the shipped files parse."""

from __future__ import annotations

from pathlib import Path

import pytest

from gill_eval.bench.quickstart_steps import quickstart_pipeline
from gill_eval.errors import ConfigError, InputError
from gill_eval.pipeline import load_pipeline

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"


@pytest.mark.parametrize("name", ["table1", "table2", "table3", "table5", "table8", "quickstart"])
def test_shipped_pipelines_parse(name):
    pipe = load_pipeline(PIPELINES / f"{name}.toml")
    assert pipe.runs and pipe.report.name.endswith(".md")


def test_quickstart_file_equals_the_packaged_matrix():
    from_file = load_pipeline(PIPELINES / "quickstart.toml")
    packaged = quickstart_pipeline(from_file.report)
    for attr in ("title", "report", "seeds", "models", "runs", "baseline", "scorers", "batch_size", "fid_bootstrap", "preamble"):
        assert getattr(from_file, attr) == getattr(packaged, attr), attr


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
