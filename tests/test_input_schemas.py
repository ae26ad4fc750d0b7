"""Every field of every input format, given a wrong type: one line naming file, record and field; nothing written.

Property-style: from one valid document per format, the test generates a mutant for every field (each dict
value, the first item of each list, the containers themselves) and every kind of wrong value (a string for a
number, a number for a string, a list for a table, a table for a list, null, huge integers, a bool, a float,
NaN, text that is not valid Unicode) plus a deletion of every required key, runs the real reader on a file
holding it, and requires a ``GillEvalError`` (exit code 2) whose message is one line, starts with the file,
names the record and the field, and that nothing was written under the data root. The readers are called
directly (fast); tests/faults/test_bad_inputs.py runs representative cases through the CLI.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any, Callable

import pytest

from gill_eval import schema
from gill_eval.datasets import vist
from gill_eval.errors import GillEvalError
from gill_eval.store import data_root, dataset_dir

WRONG: list[tuple[str, Any]] = [
    ("string for number", "7"), ("number for string", 7), ("list for table", [1]), ("table for list", {"k": 1}),
    ("null", None), ("huge int", 2**64), ("huge negative int", -(2**70)), ("bool", True), ("float", 1.5),
    ("NaN", math.nan), ("non-UTF-8 text", "\udc80"),
]


def _wrong_for(original: Any) -> list[tuple[str, Any]]:
    """The values of ``WRONG`` that are not of the original's type (an int is a valid float, a list a valid list)."""
    if isinstance(original, str):
        return [(k, v) for k, v in WRONG if not isinstance(v, str) or k == "non-UTF-8 text"]
    if isinstance(original, float):
        return [(k, v) for k, v in WRONG if not isinstance(v, (int, float)) or isinstance(v, bool) or k == "NaN"]
    if isinstance(original, int):
        return [(k, v) for k, v in WRONG if k not in ("number for string",)]
    if isinstance(original, list):
        return [(k, v) for k, v in WRONG if not isinstance(v, list)]
    return [(k, v) for k, v in WRONG if not isinstance(v, dict)]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every field below ``value``: dict values, and the first item of each list."""
    out: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            out += [prefix + (key,), *_paths(item, prefix + (key,))]
    elif isinstance(value, list) and value:
        out += [prefix + (0,), *_paths(value[0], prefix + (0,))]
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    doc = copy.deepcopy(doc)
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return doc


def _drop(doc: Any, path: tuple[Any, ...]) -> Any:
    doc = copy.deepcopy(doc)
    target = doc
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return doc


def _json_place(path: tuple[Any, ...]) -> str:
    """How a JSON location is written in messages: ``data.dialogs[0].dialog[0]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _expected_names(path: tuple[Any, ...], toml: bool) -> list[str]:
    """What the message must contain to name the record and the field at ``path``."""
    if isinstance(path[-1], str):
        record, field = path[:-1], [f"'{path[-1]}'"]
    else:
        record, field = path, []
    if toml:
        table = record[:1] if record[:1] == ("pipeline",) else record[:2]
        label = f"[[run]] #{table[1] + 1}" if table[:1] == ("run",) and len(table) > 1 else \
            f"[{'.'.join(map(str, table))}]" if table else ""
        inner = _json_place(record[len(table):])
        return [n for n in (label, inner) if n] + field
    return ([_json_place(record) + ":"] if record else []) + field


def _check_one(read: Callable[[Path], Any], file: Path, names: list[str], case: str) -> str | None:
    """None when ``read(file)`` fails as promised, else what went wrong."""
    try:
        read(file)
    except GillEvalError as exc:
        line = str(exc)
        if exc.exit_code != 2 or "\n" in line or not line.startswith(str(file)):
            return f"{case}: not one line starting with the file, exit 2: {line!r}"
        missing = [n for n in names if n not in line]
        if missing:
            return f"{case}: {line!r} does not name {missing}"
        if data_root().exists() and any(data_root().iterdir()):
            return f"{case}: wrote under the data root: {sorted(p.name for p in data_root().iterdir())}"
        return None
    except Exception as exc:  # noqa: BLE001 - the point: any other exception is a traceback for the user
        return f"{case}: {type(exc).__name__}: {exc}"
    return f"{case}: accepted"


def _required(fmt: schema.Format, path: tuple[Any, ...]) -> bool:
    parent = schema._bare(schema._type_at(fmt.root, list(path[:-1])))
    return path[-1] in getattr(parent, "__required_keys__", ())


def _mutants(fmt: schema.Format, doc: Any, accepted: dict[tuple[Any, ...], set[str]] | None = None):
    """(case name, mutated document, names the message must hold) for every field and wrong value."""
    yield "whole file: list for table", [1] if isinstance(doc, dict) else {"k": 1}, []
    for path in _paths(doc):
        for kind, value in _wrong_for(_get(doc, path)):
            if kind in (accepted or {}).get(path, set()):
                continue
            yield f"{path} {kind}", _set(doc, path, value), _expected_names(path, fmt.toml)
        if isinstance(path[-1], str) and _required(fmt, path):
            yield f"{path} deleted", _drop(doc, path), _expected_names(path, fmt.toml)


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _run_json(tmp_path: Path, fmt: schema.Format, doc: Any, read: Callable[[Path], Any], **kw: Any) -> int:
    problems, count = [], 0
    file = tmp_path / f"{fmt.name}.json"
    for case, mutant, names in _mutants(fmt, doc, **kw):
        file.write_text(json.dumps(mutant))  # json writes lone surrogates and NaN as escapes / literals
        count += 1
        if (problem := _check_one(read, file, names, case)) is not None:
            problems.append(problem)
    # non-UTF-8 bytes in the file itself: one line naming the file and the line
    text = json.dumps(doc, indent=1)
    line = text[:text.index('"')].count("\n") + 1
    file.write_bytes(text.replace('"', '"\xff', 1).encode("latin-1"))
    if (problem := _check_one(read, file, [f"line {line}:", "not UTF-8"], "non-UTF-8 file")) is not None:
        problems.append(problem)
    assert not problems, "\n".join(problems)
    return count


# ---------------------------------------------------------------------------------------------- documents
def vist_doc() -> dict:
    rows = [[{"story_id": "s1", "album_id": "a1", "photo_flickr_id": f"p{i}", "worker_arranged_photo_order": i,
              "text": f"t{i}", "original_text": f"T{i}"}] for i in range(5)]
    return {"annotations": rows, "images": [{"id": f"p{i}", "url_o": f"http://127.0.0.1:9/p{i}.jpg"} for i in range(5)]}


def visdial_doc() -> dict:
    rounds = [{"question": r, "answer": r, "answer_options": [r, 0], "gt_index": 0} for r in range(2)]
    return {"split": "val2018", "data": {"questions": ["q0", "q1"], "answers": ["a0", "a1"],
                                         "dialogs": [{"image_id": 7, "caption": "c", "dialog": rounds}]}}


def dense_doc() -> list:
    return [{"image_id": 7, "round_id": 1, "gt_relevance": [0.5, 1.0]}]


def coco_doc() -> dict:
    return {"images": [{"id": 1, "file_name": "COCO_val2014_000000000001.jpg"}],
            "annotations": [{"id": 11, "image_id": 1, "caption": "a cat"}]}


def vqa_questions_doc() -> dict:
    return {"questions": [{"image_id": 1, "question": "what?", "question_id": 10}]}


def vqa_annotations_doc() -> dict:
    return {"annotations": [{"question_id": 10, "image_id": 1, "question_type": "what", "answer_type": "other",
                             "multiple_choice_answer": "cat",
                             "answers": [{"answer": "cat", "answer_confidence": "yes", "answer_id": 1}]}]}


@pytest.fixture
def no_download(monkeypatch):
    def refuse(*_a: Any, **_k: Any) -> None:
        raise AssertionError("a bad file reached the download stage")

    monkeypatch.setattr(vist, "download_images", refuse)


def test_vist_sis_every_field(tmp_path, no_download):
    from gill_eval.datasets.download import DownloadOptions

    n = _run_json(tmp_path, schema.VIST_SIS, vist_doc(), lambda p: vist.prepare_vist(str(p), "val", DownloadOptions()))
    assert n > 80


def test_visdial_dialogs_and_dense_every_field(tmp_path):
    from gill_eval.datasets.visdial import prepare_visdial

    zip_path = str(tmp_path / "never-opened.zip")
    n = _run_json(tmp_path, schema.VISDIAL_DIALOGS, visdial_doc(), lambda p: prepare_visdial(str(p), zip_path))
    dialogs = tmp_path / "dialogs.json"
    dialogs.write_text(json.dumps(visdial_doc()))
    n += _run_json(tmp_path, schema.VISDIAL_DENSE, dense_doc(),
                   lambda p: prepare_visdial(str(dialogs), zip_path, dense=str(p)))
    assert n > 150


def test_coco_captions_every_field(tmp_path):
    from gill_eval.datasets.coco import prepare_coco

    assert _run_json(tmp_path, schema.COCO_CAPTIONS, coco_doc(),
                     lambda p: prepare_coco(str(p), str(tmp_path / "never-opened.zip"), num_captions=1)) > 40


def _parse_vqa(fmt: schema.Format, path: Path) -> Any:
    from gill_eval.datasets import vqav2
    from gill_eval.datasets.sources import load_json

    if fmt is schema.VQA_QUESTIONS:
        return vqav2.parse_questions(path, load_json(path))
    return vqav2.parse_annotations(path, load_json(path), vqav2.SPLIT)


@pytest.mark.parametrize("fmt, doc", [(schema.VQA_QUESTIONS, vqa_questions_doc()),
                                      (schema.VQA_ANNOTATIONS, vqa_annotations_doc())])
def test_vqav2_schemas_every_field(tmp_path, fmt, doc):
    """Through the VQAv2 reader itself (``datasets/vqav2.py`` validates before it parses)."""
    assert _run_json(tmp_path, fmt, doc, lambda p: _parse_vqa(fmt, p)) > 20


# ---------------------------------------------------------------------------------------------- TOML
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string; a lone surrogate escape is invalid TOML
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def _toml(doc: dict) -> str:
    """The document as TOML with inline tables (``run = [{...}]`` parses like ``[[run]]`` sections)."""
    return "".join(f"{k} = {_toml_value(v)}\n" for k, v in doc.items() if v is not None)


def pipeline_doc() -> dict:
    return {"pipeline": {"title": "t", "report": "r.md", "html": "g", "baseline": "sd", "seeds": "0-1",
                         "scorers": "tiny", "device": "cpu", "batch_size": 2, "preamble": ["p"]},
            "models": {"sd": {"name": "tiny-sd", "options": {}}},
            "run": [{"benchmark": "vist", "models": ["sd"], "contexts": ["1c"], "num": 4, "limit": 2}]}


def test_pipeline_toml_every_field(tmp_path):
    from gill_eval.pipeline import load_pipeline

    doc, file, problems, count = pipeline_doc(), tmp_path / "p.toml", [], 0
    file.write_text(_toml(doc))
    assert load_pipeline(file).batch_size == 2  # the valid document loads
    accepted = {("pipeline", "seeds"): {"number for string"}}  # seeds = 3 is one seed
    for case, mutant, names in _mutants(schema.PIPELINE, doc, accepted=accepted):
        if "null" in case:  # TOML has no null: the key is left out, which the deletion cases cover
            continue
        file.write_text(_toml(mutant) if isinstance(mutant, dict) else f"pipeline = {_toml_value(mutant)}\n")
        if "non-UTF-8 text" in case:
            names = ["invalid TOML", "at line "]  # TOML has no lone surrogate escape: the parser names the line
        count += 1
        if (problem := _check_one(load_pipeline, file, names, case)) is not None:
            problems.append(problem)
    file.write_bytes(b"[pipeline]\nreport = \"r\xff.md\"\n")
    if (problem := _check_one(load_pipeline, file, ["not UTF-8"], "non-UTF-8 file")) is not None:
        problems.append(problem)
    assert not problems, "\n".join(problems)
    assert count > 150


# ---------------------------------------------------------------------------------------------- TSV
TSV_WRONG = [("number", b"7"), ("empty", b""), ("null", b"null"), ("list", b"[1]"), ("huge int", b"9" * 40),
             ("non-UTF-8", b"\xff\xfe"), ("extra tab", b"a\tb")]


def test_partiprompts_and_annotation_tsvs_every_column(tmp_path, partiprompts_dir):
    """Each column of the first data row of the four files: one line naming a file and a line; nothing written."""
    from gill_eval.datasets.partiprompts import FILE_NAMES
    from gill_eval.datasets.partiprompts_prepare import prepare

    problems, count, folder = [], 0, tmp_path / "tsv"
    folder.mkdir()
    originals = {name: (partiprompts_dir / name).read_bytes() for name in FILE_NAMES}
    for name, data in originals.items():
        (folder / name).write_bytes(data)
    for name in FILE_NAMES:
        lines = originals[name].split(b"\n")
        columns = lines[1].split(b"\t")
        for column in range(len(columns)):
            for kind, value in TSV_WRONG:
                if value == columns[column]:
                    continue
                row = columns[:column] + [value] + columns[column + 1:]
                (folder / name).write_bytes(b"\n".join([lines[0], b"\t".join(row), *lines[2:]]))
                count += 1
                try:
                    prepare(str(folder), verify=False)
                    problems.append(f"{name} column {column} {kind}: accepted")
                except GillEvalError as exc:
                    line = str(exc)
                    if "\n" in line or "line 2" not in line or str(folder) not in line:
                        problems.append(f"{name} column {column} {kind}: {line!r}")
                except Exception as exc:  # noqa: BLE001
                    problems.append(f"{name} column {column} {kind}: {type(exc).__name__}: {exc}")
                if dataset_dir("partiprompts").exists():
                    problems.append(f"{name} column {column} {kind}: wrote the dataset folder")
            (folder / name).write_bytes(originals[name])
    assert not problems, "\n".join(problems[:20])
    assert count > 100


# ---------------------------------------------------------------------------------------------- URLs
@pytest.mark.parametrize("url, allowed, expected", [
    ("https://example.org/a.jpg", False, "https://example.org/a.jpg"),
    ("file:///etc/passwd", False, "is a local file, not an http(s) URL; pass --allow-local-urls"),
    ("/etc/passwd", False, "is a local file"),
    ("photos/a.jpg", False, "is a local file"),
    ("ftp://example.org/a.jpg", True, "uses the scheme 'ftp'; only http and https"),
    ("file:///data/a.jpg", True, "file:///data/a.jpg"),
    ("photos/a.jpg", True, "file:///base/photos/a.jpg"),
])
def test_image_url_rule(url, allowed, expected):
    try:
        got = schema.image_url(url, "x.json: images[0] (id 'p') key 'url_o'", Path("/base"), allowed)
    except GillEvalError as exc:
        assert str(exc).startswith("x.json: images[0] (id 'p') key 'url_o': ") and expected in str(exc), str(exc)
    else:
        assert got == expected


def test_vist_local_url_needs_the_option(tmp_path):
    doc = vist_doc()
    doc["images"][2]["url_o"] = "file:///etc/passwd"
    with pytest.raises(GillEvalError, match=r"images\[2\] \(id 'p2'\): key 'url_o': 'file:///etc/passwd' is a local"):
        vist.parse_sis(tmp_path / "s.json", doc)
    doc["images"][3]["url_o"] = "p3.jpg"
    parsed = vist.parse_sis(tmp_path / "s.json", doc, allow_local_urls=True)
    assert parsed.photo_urls["p2"] == "file:///etc/passwd"
    assert parsed.photo_urls["p3"] == (tmp_path / "p3.jpg").as_uri()
