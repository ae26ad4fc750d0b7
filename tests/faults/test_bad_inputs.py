"""Confusing or malformed inputs: one line naming the file/key and the fix, exit code 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gill_eval.cli import app

PIPELINE = """[pipeline]
report = "r.md"
{head}
[models.sd]
name = "tiny-sd"
{model}
[[run]]
benchmark = "vist"
{run}
"""


def one_line(result, *needles: str) -> str:
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(("head", "model", "run", "needles"), [
    ('batch_size = "four"', "", 'models = ["sd"]', ["[pipeline]", "'batch_size' should be int", "'four'"]),
    ("batch_size = 0", "", 'models = ["sd"]', ["'batch_size' must be at least 1"]),
    ("", "", 'models = "sd"', ["[[run]] #1", "'models' should be list", 'write models = ["sd"]']),
    ("", "", 'models = ["sd"]\ncontexts = "1c"', ["'contexts' should be list"]),
    ("", "", 'models = ["sd"]\nnum = "many"', ["'num' should be int"]),
    ("", "", 'models = ["sd", 3]', ["[[run]] #1: models[1]: expected str, got int 3"]),
    ("", 'options = "steps=2"', 'models = ["sd"]', ["[models.sd]", "'options' should be dict"]),
    ("seeds = 1.5", "", 'models = ["sd"]', ["'seeds' should be str or int"]),
])
def test_pipeline_type_errors_are_one_line(head, model, run, needles, tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(PIPELINE.format(head=head, model=model, run=run))
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "data"), "run", str(path)])
    one_line(result, str(path), *needles)
    assert not (tmp_path / "data").exists()


def test_processes_zero_is_refused_not_read_as_all_cores(tmp_path):
    tsv = tmp_path / "t.tsv"
    tsv.write_text("a caption\thttp://127.0.0.1:9/x.jpg\n")
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "data"), "prepare", "cc3m", "--tsv", str(tsv),
                                      "--split", "val", "--processes", "0"])
    one_line(result, "--processes must be at least 1")
    assert not (tmp_path / "data").exists()


def test_binary_tsv_is_one_line_without_raw_bytes(tmp_path):
    tsv = tmp_path / "t.tsv"
    tsv.write_bytes(bytes(range(256)) * 8)
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "data"), "prepare", "cc3m", "--tsv", str(tsv),
                                      "--split", "val"])
    line = one_line(result, str(tsv), "not a text file")
    assert line.isprintable() and line.isascii()


def test_huge_vist_order_is_one_line(tmp_path):
    annotations = [[{"story_id": "s1", "album_id": "a", "photo_flickr_id": str(p), "worker_arranged_photo_order": p,
                     "text": "t", "original_text": "t"}] for p in range(5)]
    annotations[2][0]["worker_arranged_photo_order"] = 10**30
    sis = tmp_path / "val.story-in-sequence.json"
    sis.write_text(json.dumps({"annotations": annotations, "images": [{"id": str(p)} for p in range(5)]}))
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "data"), "prepare", "vist", "--sis", str(sis)])
    one_line(result, str(sis), "annotations[2][0]", "'worker_arranged_photo_order' must be at most 999, got int "
             "1000000000000000000000000000000")


def test_source_limits_must_be_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv("GILL_EVAL_SOURCE_TIMEOUT", "soon")
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "data"), "prepare", "cc3m", "--tsv",
                                      "http://127.0.0.1:9/x.tsv", "--split", "val"])
    one_line(result, "GILL_EVAL_SOURCE_TIMEOUT='soon'")
    assert not Path(tmp_path / "data").exists()


# ------------------------------------------------------------------ issue 24: schemas at the boundary (gill_eval/schema.py)
def test_non_utf8_pipeline_is_one_line(tmp_path):
    path = tmp_path / "p.toml"
    path.write_bytes(b"[pipeline]\nreport = \"r.md\"\ntitle = \"caf\xe9\"\n")  # Latin-1, not UTF-8
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "data"), "run", str(path)])
    one_line(result, str(path), "line 3", "not UTF-8")
    assert not (tmp_path / "data").exists()


def _visdial(tmp_path: Path, answers: list, image_id: int) -> Path:
    rounds = [{"question": 0, "answer": 0}]
    doc = {"split": "val2018", "data": {"questions": ["q"], "answers": answers,
                                        "dialogs": [{"image_id": image_id, "caption": "c", "dialog": rounds}]}}
    path = tmp_path / "visdial_1.0_val.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(("answers", "image_id", "needles"), [
    ([3], 1, ["data.answers[0]: expected str, got int 3"]),
    (["a"], 2**64, ["data.dialogs[0]: key 'image_id' must be at most 9223372036854775807", "18446744073709551616"]),
])
def test_visdial_wrong_types_are_one_line(tmp_path, answers, image_id, needles):
    dialogs = _visdial(tmp_path, answers, image_id)
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "data"), "prepare", "visdial", "--dialogs",
                                      str(dialogs), "--images", str(tmp_path / "images.zip")])
    one_line(result, str(dialogs), *needles)
    assert not (tmp_path / "data" / "datasets").exists()


def test_vist_file_url_is_refused_without_the_option(tmp_path):
    annotations = [[{"story_id": "s1", "album_id": "a", "photo_flickr_id": str(p), "worker_arranged_photo_order": p,
                     "text": "t", "original_text": "t"}] for p in range(5)]
    images = [{"id": str(p), "url_o": f"http://127.0.0.1:9/{p}.jpg"} for p in range(5)]
    images[1]["url_o"] = "file:///etc/passwd"
    sis = tmp_path / "val.story-in-sequence.json"
    sis.write_text(json.dumps({"annotations": annotations, "images": images}))
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "data"), "prepare", "vist", "--sis", str(sis)])
    one_line(result, str(sis), "images[1] (id '1'): key 'url_o'", "is a local file", "--allow-local-urls")
    assert not (tmp_path / "data" / "datasets").exists()
