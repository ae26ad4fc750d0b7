"""`prepare coco`: the seeded caption manifest (rule, hash), the full reference set, clear errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from gill_eval.cli import app
from gill_eval.sample.make import synthetic_image

IMAGE_IDS = [391895, 522418, 184613, 318219, 554625]  # 554625 has no file in the images folder


def captions_json() -> dict:
    images = [{"license": 3, "file_name": f"COCO_val2014_{i:012d}.jpg", "coco_url": "http://example.org/x.jpg",
               "height": 480, "width": 640, "date_captured": "2013-11-14 11:18:45",
               "flickr_url": "http://example.org/y.jpg", "id": i} for i in IMAGE_IDS]
    annotations = []
    caption_id = 37
    for n, image_id in enumerate(IMAGE_IDS[:4]):  # the last image has no caption: still a reference image
        for k in range(5):
            text = f"A Caption {n}-{k} about the picture" + (" \n" if k % 2 else "")
            annotations.append({"image_id": image_id, "id": caption_id, "caption": text})
            caption_id += 3 + (k * 7) % 11
    return {"info": {"year": 2014}, "images": images, "licenses": [], "annotations": annotations}


def cli(data: Path, *args: str):
    return CliRunner().invoke(app, ["--data-dir", str(data), *args])


@pytest.fixture
def files(tmp_path):
    captions = tmp_path / "captions_val2014.json"
    captions.write_text(json.dumps(captions_json()), encoding="utf-8")
    folder = tmp_path / "val2014"
    folder.mkdir()
    for i in IMAGE_IDS[:4]:
        (folder / f"COCO_val2014_{i:012d}.jpg").write_bytes(synthetic_image(str(i)))
    return captions, folder


def oracle_draw(num: int, seed: int) -> list[tuple[int, int, str]]:
    """The documented rule, written out independently: smallest uniform keys over captions by id."""
    anns = sorted(captions_json()["annotations"], key=lambda a: a["id"])
    u = np.random.default_rng(seed).random(len(anns))
    picked = sorted(range(len(anns)), key=lambda i: (u[i], anns[i]["id"]))[:num]
    return sorted((anns[i]["id"], anns[i]["image_id"], anns[i]["caption"].strip()) for i in picked)


def test_seeded_manifest_rule_and_hash(files, tmp_path):
    captions, images = files
    result = cli(tmp_path / "data", "prepare", "coco", "--captions", str(captions), "--images", str(images),
                 "--num-captions", "7", "--seed", "3", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    want = oracle_draw(7, 3)
    folder = tmp_path / "data" / "datasets" / "coco"
    rows = pq.read_table(folder / "examples" / "00000.parquet").to_pylist()
    assert [(r["caption_id"], r["image_id"], r["caption"]) for r in rows] == want
    assert all(r["key"] == str(r["caption_id"]) for r in rows)
    assert all(r["caption"] == r["caption"].strip() and r["caption"].startswith("A Caption") for r in rows)
    digest = hashlib.sha256("".join(json.dumps(list(w), ensure_ascii=False) + "\n" for w in want).encode()).hexdigest()
    assert summary["caption_manifest_sha256"] == digest
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["options"]["seed"] == 3 and "default_rng(seed)" in manifest["options"]["sampling_rule"]
    assert manifest["counts"]["caption_manifest_sha256"] == digest
    assert summary["reference_images"] == {"total": 5, "success": 4, "failed": 1,
                                           "failed_by_reason": {"missing_file": 1}}
    keys = pq.read_table(folder / "images" / "00000.parquet").column("key").to_pylist()
    assert keys == [str(i) for i in sorted(IMAGE_IDS)]  # the full set, including the caption-less image


def test_other_seed_draws_other_captions():
    assert oracle_draw(7, 0) != oracle_draw(7, 1)
    from gill_eval.datasets.coco import sample_captions

    captions = sorted((a["id"], a["image_id"], a["caption"].strip()) for a in captions_json()["annotations"])
    assert sample_captions(captions, 7, 1, Path("x")) == oracle_draw(7, 1)


def test_too_many_captions_is_a_clear_error(files, tmp_path):
    captions, images = files
    result = cli(tmp_path / "data", "prepare", "coco", "--captions", str(captions), "--images", str(images),
                 "--num-captions", "30000")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: --num-captions 30000 exceeds the 20 captions in {captions}"
    assert not (tmp_path / "data" / "datasets" / "coco").exists()


def test_missing_column_names_file_and_row(files, tmp_path):
    captions, images = files
    data = captions_json()
    del data["annotations"][3]["caption"]
    captions.write_text(json.dumps(data), encoding="utf-8")
    result = cli(tmp_path / "data", "prepare", "coco", "--captions", str(captions), "--images", str(images),
                 "--num-captions", "5")
    assert result.exit_code == 2
    assert f"{captions}: annotations[3]: missing key 'caption'" in result.stderr
