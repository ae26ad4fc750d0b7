"""Names from input files, options and plugins never steer a write or a removal outside the data root.

Each case crafts one field that becomes a path component (a split inside a dataset file, a split or
dataset option, an archive member, a plugin's model or benchmark name, a key, a context) or a data
root whose ``datasets/`` folder is a symbolic link elsewhere, and runs the code that used to build the
path from it. Each must be refused in one line, and a sentinel folder beside the data root must be
exactly as it was (docs/reliability.md, "Names and the data root").
"""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from collections.abc import Callable
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gill_eval.cli import app
from gill_eval.errors import GillEvalError
from gill_eval.sample.make import synthetic_image
from gill_eval.store.names import NAME_PATTERN, check_name, remove_tree

# the victim sits beside the data root: <tmp>/victim and <tmp>/data
ESCAPE = "x/../../../victim"  # under <tmp>/data/datasets/ as "<prefix>-x/../../../victim" -> <tmp>/victim
SENTINEL_TEXT = "must survive"


def _visdial_dialogs(split: str) -> dict:
    rounds = [{"question": 0, "answer": 0}]
    return {"version": "1.0", "split": split,
            "data": {"questions": ["what is it"], "answers": ["a dog"],
                     "dialogs": [{"image_id": 7, "caption": "a dog", "dialog": rounds}]}}


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _cli(tmp: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--data-dir", str(tmp / "data"), *args])
    return result.exit_code, result.output


# ----------------------------------------------------------------------------------- the cases
# Each takes the test's tmp folder (data root <tmp>/data, victim <tmp>/victim) and returns
# (exit code, output) of a CLI run, or raises the library's error.

def case_visdial_split_in_dialogs_file(tmp: Path) -> tuple[int, str]:
    """The reported hole: the dialogs file's own ``split`` field, with --overwrite."""
    dialogs = tmp / "dialogs.json"
    dialogs.write_text(json.dumps(_visdial_dialogs(ESCAPE)), encoding="utf-8")
    images = _zip(tmp / "images.zip", {f"VisualDialog_{ESCAPE.replace('/', '_')}_000000000007.jpg": synthetic_image("7")})
    return _cli(tmp, "prepare", "visdial", "--dialogs", str(dialogs), "--images", str(images), "--overwrite")


def case_visdial_images_zip_member(tmp: Path) -> tuple[int, str]:
    dialogs = tmp / "dialogs.json"
    dialogs.write_text(json.dumps(_visdial_dialogs("val2018")), encoding="utf-8")
    images = _zip(tmp / "images.zip", {"../../victim/VisualDialog_val2018_000000000007.jpg": synthetic_image("7")})
    return _cli(tmp, "prepare", "visdial", "--dialogs", str(dialogs), "--images", str(images), "--overwrite")


def case_coco_images_zip_member(tmp: Path) -> None:
    from gill_eval.datasets.archive import open_image_source

    open_image_source(_zip(tmp / "val2014.zip", {"/abs/COCO_val2014_000000000001.jpg": synthetic_image("1")}))


def case_cc3m_split_option(tmp: Path) -> tuple[int, str]:
    tsv = tmp / "cc3m.tsv"
    tsv.write_text("a dog\thttp://127.0.0.1:9/a.jpg\n", encoding="utf-8")
    return _cli(tmp, "prepare", "cc3m", "--tsv", str(tsv), "--split", ESCAPE, "--overwrite")


def case_vist_split_option(tmp: Path) -> tuple[int, str]:
    sis = tmp / "val.story-in-sequence.json"
    sis.write_text(json.dumps({"images": [], "annotations": []}), encoding="utf-8")
    return _cli(tmp, "prepare", "vist", "--sis", str(sis), "--split", ESCAPE, "--overwrite")


def case_vist_sis_tar_member(tmp: Path) -> None:
    from gill_eval.datasets.archive import read_tar_member

    path = tmp / "sis.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        data = b"{}"
        info = tarfile.TarInfo("../../victim/val.story-in-sequence.json")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    read_tar_member(path, "sis/val.story-in-sequence.json")


def case_features_dataset_option(tmp: Path) -> tuple[int, str]:
    return _cli(tmp, "features", "clip", "--dataset", "../../victim", "--device", "cpu")


def case_dataset_name(tmp: Path) -> None:
    from gill_eval.store import dataset_dir

    dataset_dir("../victim")


def case_feature_folder_name(tmp: Path) -> None:
    from gill_eval.store.features import feature_dir

    feature_dir("clip", "../../victim")


def case_context_of_a_result(tmp: Path) -> None:
    from gill_eval.bench.results import result_dir

    result_dir("vist", "0123456789", "../../../victim", {})


def case_context_of_a_generation(tmp: Path) -> None:
    from gill_eval.bench.generation import GenerationJob, generation_dir

    class Fingerprinted:
        def fingerprint_hash(self) -> str:
            return "0123456789"

    generation_dir(GenerationJob("vist", "../../../../victim", ["1"], lambda ids: [], "f" * 64), Fingerprinted())


def case_plugin_model_name(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gill_eval.models import registry

    real = registry._entry_points()["tiny-sd"]
    crafted = EntryPoint("../../victim", real.value, real.group)
    monkeypatch.setattr(registry, "_entry_points", lambda: {crafted.name: crafted})
    registry.model_class(crafted.name)


def case_plugin_benchmark_name(tmp: Path) -> None:
    from gill_eval.bench import registry

    real = registry._entry_points()["vist"]
    registry._load("../../victim", EntryPoint("../../victim", real.value, real.group))


def case_key_of_an_exported_image(tmp: Path) -> None:
    from gill_eval.exports.gill_layout import image_file_name

    image_file_name("../../victim/x", synthetic_image("x"))


def case_overwrite_through_a_symlinked_datasets_folder(tmp: Path) -> tuple[int, str]:
    """``<root>/datasets`` links to the victim, which holds a ``visdial`` folder: --overwrite must not follow.

    (A linked ``datasets/`` is a legitimate layout, so the run may write its lock files there; it must not
    remove or change anything that was there.)"""
    (tmp / "data").mkdir()
    (tmp / "data" / "datasets").symlink_to(tmp / "victim", target_is_directory=True)
    dialogs = tmp / "dialogs.json"
    dialogs.write_text(json.dumps(_visdial_dialogs("val2018")), encoding="utf-8")
    images = _zip(tmp / "images.zip", {"VisualDialog_val2018_000000000007.jpg": synthetic_image("7")})
    return _cli(tmp, "prepare", "visdial", "--dialogs", str(dialogs), "--images", str(images), "--overwrite")


CASES: dict[str, Callable[..., object]] = {
    name.removeprefix("case_"): fn for name, fn in globals().items() if name.startswith("case_")
}


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text(encoding="utf-8") if p.is_file() else "<dir>"
            for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("case", sorted(CASES))
def test_crafted_name_is_refused_and_nothing_outside_the_root_is_touched(case: str, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "sentinel.txt").write_text(SENTINEL_TEXT, encoding="utf-8")
    fn = CASES[case]
    args = (tmp_path, monkeypatch) if "monkeypatch" in fn.__code__.co_varnames[:fn.__code__.co_argcount] else (tmp_path,)
    if case == "overwrite_through_a_symlinked_datasets_folder":
        (victim / "visdial").mkdir()
        (victim / "visdial" / "keep.txt").write_text(SENTINEL_TEXT, encoding="utf-8")
    before = _snapshot(victim)
    try:
        outcome = fn(*args)
    except GillEvalError as exc:
        message = str(exc)
    else:
        assert outcome is not None, f"{case}: accepted"
        code, message = outcome
        assert code == 2, f"{case}: exit {code}: {message}"
        errors = [line for line in message.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, message
        message = errors[0].removeprefix("error: ")
    assert "\n" not in message.strip(), message
    assert any(word in message for word in ("not a safe name", "outside", "unsafe member", "choose")), message
    after = _snapshot(victim)
    assert {name: after.get(name) for name in before} == before  # nothing removed or changed
    if case != "overwrite_through_a_symlinked_datasets_folder":
        assert after == before  # nor added


@pytest.mark.parametrize("name", ["cc3m-val", "visdial-val2018", "vist", "5c4i", "r10", "tiny-gill", "coco-fid",
                                  "0123abcdef", "sd1.5", "a_b", "A" * 128])
def test_real_names_pass(name: str) -> None:
    assert check_name("name", name, "test") == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "../a", "x/../y", "a..b", ".hidden", "-flag", "a b",
                                  "a\nb", "é", "A" * 129, "C:", 5, None])
def test_unsafe_names_are_refused_in_one_line(name: object) -> None:
    with pytest.raises(GillEvalError) as caught:
        check_name("split", name, "dialogs.json: split")
    assert str(caught.value).startswith("dialogs.json: split: split ") and "\n" not in str(caught.value)
    assert not (isinstance(name, str) and NAME_PATTERN.fullmatch(name) and ".." not in name)


def test_remove_tree_removes_inside_the_root_and_refuses_links_and_the_root_itself(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a" / "b").mkdir(parents=True)
    outside.mkdir()
    (outside / "keep.txt").write_text(SENTINEL_TEXT, encoding="utf-8")
    (root / "link").symlink_to(outside, target_is_directory=True)
    for refused in (root / "link", root, root / ".." / "outside", root / "a" / ".." / ".." / "outside"):
        with pytest.raises(GillEvalError):
            remove_tree(refused, root)
    assert (outside / "keep.txt").read_text(encoding="utf-8") == SENTINEL_TEXT
    remove_tree(root / "a", root)
    assert not (root / "a").exists() and (root / "link").is_symlink()
