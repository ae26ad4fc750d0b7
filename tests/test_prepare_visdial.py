"""`prepare visdial` on real-format VisDial v1.0 files and an images zip; safe archive reading."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from gill_eval.cli import app
from gill_eval.datasets import archive
from gill_eval.errors import InputError
from gill_eval.sample.make import synthetic_image

IMAGE_IDS = [185565, 284024, 378466, 9]  # 378466 is not in the zip; 9 is a truncated JPEG
QUESTIONS = [f"question number {i}" for i in range(12)]  # stored without "?", as in the real file
ANSWERS = [f"answer {i}" for i in range(15)]


def image_name(image_id: int) -> str:
    return f"VisualDialog_val2018_{image_id:012d}.jpg"


def dialogs_json() -> dict:
    dialogs = []
    for d, image_id in enumerate(IMAGE_IDS):
        rounds = [{"answer": (d + 2 * r) % len(ANSWERS), "question": (d + r) % len(QUESTIONS),
                   "answer_options": [(r + k) % len(ANSWERS) for k in range(100)], "gt_index": r}
                  for r in range(10)]
        dialogs.append({"image_id": image_id, "caption": f"caption of dialog {d}", "dialog": rounds})
    return {"version": "1.0", "split": "val2018", "data": {"questions": QUESTIONS, "answers": ANSWERS, "dialogs": dialogs}}


def dense_json() -> list:
    return [{"image_id": i, "round_id": 1 + n % 10, "gt_relevance": [0.0] * 99 + [1.0]} for n, i in enumerate(IMAGE_IDS)]


def write_zip(path: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("VisualDialog_val2018/", b"")
        for image_id in (185565, 284024):
            zf.writestr(f"VisualDialog_val2018/{image_name(image_id)}", synthetic_image(str(image_id)))
        zf.writestr(f"VisualDialog_val2018/{image_name(9)}", synthetic_image("9")[:200])
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


def cli(data: Path, *args: str):
    return CliRunner().invoke(app, ["--data-dir", str(data), *args])


@pytest.fixture
def files(tmp_path):
    dialogs = tmp_path / "visdial_1.0_val.json"
    dialogs.write_text(json.dumps(dialogs_json()), encoding="utf-8")
    dense = tmp_path / "visdial_1.0_val_dense_annotations.json"
    dense.write_text(json.dumps(dense_json()), encoding="utf-8")
    return dialogs, dense, write_zip(tmp_path / "VisualDialog_val2018.zip")


def test_one_row_per_dialog_with_question_marks_and_image_coverage(files, tmp_path):
    dialogs, dense, images = files
    result = cli(tmp_path / "data", "prepare", "visdial", "--dialogs", str(dialogs), "--images", str(images),
                 "--dense", str(dense), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["examples"] == 4 and summary["dense_annotations_checked"] == 4
    assert summary["images"] == {"total": 4, "success": 2, "failed": 2,
                                 "failed_by_reason": {"decode_error": 1, "missing_file": 1}}
    folder = tmp_path / "data" / "datasets" / "visdial"
    rows = pq.read_table(folder / "examples" / "00000.parquet").to_pylist()
    assert [r["image_id"] for r in rows] == IMAGE_IDS
    raw = dialogs_json()["data"]["dialogs"][1]
    assert rows[1]["questions"] == [QUESTIONS[t["question"]] + "?" for t in raw["dialog"]]
    assert all(q.endswith("?") and not q.endswith("??") for r in rows for q in r["questions"])
    assert rows[1]["answers"] == [ANSWERS[t["answer"]] for t in raw["dialog"]]
    assert rows[1]["caption"] == "caption of dialog 1" and rows[1]["rounds"] == 10
    images_rows = {r["key"]: r for r in pq.read_table(folder / "images" / "00000.parquet").to_pylist()}
    assert images_rows["185565"]["image"] == synthetic_image("185565")  # stored as is, not re-encoded
    assert images_rows["185565"]["sha256"] == hashlib.sha256(synthetic_image("185565")).hexdigest()
    assert images_rows["378466"]["status"] == "missing_file" and images_rows["9"]["status"] == "decode_error"


def test_dense_annotations_out_of_order_are_an_error(files, tmp_path):
    dialogs, dense, images = files
    entries = dense_json()
    entries[1], entries[2] = entries[2], entries[1]
    dense.write_text(json.dumps(entries), encoding="utf-8")
    result = cli(tmp_path / "data", "prepare", "visdial", "--dialogs", str(dialogs), "--images", str(images),
                 "--dense", str(dense))
    assert result.exit_code == 2
    assert f"{dense}: [1]: image_id 378466 but dialog 1 has image_id 284024" in result.stderr
    assert not (tmp_path / "data" / "datasets" / "visdial").exists()


def test_zip_with_parent_member_is_refused_and_earlier_output_kept(files, tmp_path):
    dialogs, _, images = files
    data = tmp_path / "data"
    assert cli(data, "prepare", "visdial", "--dialogs", str(dialogs), "--images", str(images)).exit_code == 0
    folder = data / "datasets" / "visdial"
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    evil = write_zip(tmp_path / "evil.zip", {"../../etc/evil.jpg": b"x"})
    result = cli(data, "prepare", "visdial", "--dialogs", str(dialogs), "--images", str(evil))
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert "\n" not in message and str(evil) in message and "'../../etc/evil.jpg'" in message
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_missing_key_names_file_and_dialog(files, tmp_path):
    dialogs, _, images = files
    data = dialogs_json()
    del data["data"]["dialogs"][2]["caption"]
    dialogs.write_text(json.dumps(data), encoding="utf-8")
    result = cli(tmp_path / "data", "prepare", "visdial", "--dialogs", str(dialogs), "--images", str(images))
    assert result.exit_code == 2
    assert f"{dialogs}: data.dialogs[2]: missing key 'caption'" in result.stderr


def test_pixel_and_member_size_limits(monkeypatch, tmp_path):
    big = io.BytesIO()
    Image.new("RGB", (50, 40)).save(big, format="PNG")
    monkeypatch.setattr(archive, "MAX_IMAGE_PIXELS", 1999)
    assert archive.check_image(big.getvalue()).status == "too_many_pixels"
    monkeypatch.setattr(archive, "MAX_IMAGE_PIXELS", 2000)
    assert archive.check_image(big.getvalue()).status == "success"
    zpath = tmp_path / "a.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("dir/a.png", big.getvalue())
    monkeypatch.setattr(archive, "MAX_MEMBER_BYTES", 10)
    with archive.open_image_source(zpath) as source, pytest.raises(archive.MemberTooLarge):
        source.read("a.png")


def test_folder_with_symlink_outside_is_refused(tmp_path):
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(b"x")
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "VisualDialog_val2018_000000000001.jpg").symlink_to(outside)
    with pytest.raises(InputError, match="resolves outside"):
        archive.open_image_source(folder)


@pytest.mark.parametrize("name", ["/abs/a.jpg", "a/../../b.jpg", "..\\b.jpg"])
def test_unsafe_member_names(tmp_path, name):
    zpath = tmp_path / "z.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr(name, b"x")
    with pytest.raises(InputError, match="unsafe member name"):
        archive.open_image_source(zpath)


def test_corrupt_zip_member_is_that_image_failure(files):
    """A member whose bytes no longer match its CRC-32 fails its own image (``corrupt_member``), not the run."""
    from gill_eval.datasets.visdial import prepare_visdial

    dialogs, _, images = files
    raw = bytearray(images.read_bytes())
    member = synthetic_image("284024")  # stored uncompressed by write_zip: its bytes appear verbatim
    at = raw.index(member) + len(member) // 2
    raw[at] ^= 0xFF
    images.write_bytes(bytes(raw))
    summary = prepare_visdial(str(dialogs), str(images))
    assert summary["images"] == {"total": 4, "success": 1, "failed": 3,
                                 "failed_by_reason": {"corrupt_member": 1, "decode_error": 1, "missing_file": 1}}
    folder = Path(summary["dir"]) / "images" / "00000.parquet"
    row = next(r for r in pq.read_table(folder).to_pylist() if r["key"] == "284024")
    assert row["image"] is None and "Bad CRC-32" in row["error_message"]
