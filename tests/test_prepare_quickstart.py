"""The prepare part of `gill-eval quickstart`: the bundled sample through the real prepare code, offline."""

from __future__ import annotations

import hashlib
import json

import pyarrow.parquet as pq

from gill_eval.quickstart import STEPS, run_quickstart
from gill_eval.sample.make import SAMPLE_ORIGIN, build_sample


def test_sample_prepares_with_the_designed_coverage(tmp_path):
    root = tmp_path / "quickstart"
    results = run_quickstart(root, [s for s in STEPS if s[0].startswith("prepare ")])
    cc3m = results["prepare cc3m"]
    assert (cc3m["train"]["examples"], cc3m["train"]["images"]["success"]) == (11, 10)
    assert cc3m["train"]["images"]["failed_by_reason"] == {"http_404": 1}
    assert (cc3m["val"]["examples"], cc3m["val"]["images"]["success"]) == (3, 2)
    vist = results["prepare vist"]
    assert vist["examples"] == 5 and vist["photos_referenced"] == 15 and vist["photos_without_url_o"] == 1
    assert vist["images"] == {"total": 14, "success": 13, "failed": 1, "failed_by_reason": {"http_404": 1}}
    assert vist["stories"] == {"all_5_images": 3, "first_4_only": 1, "context_image_missing": 1}
    # the url_o originals are dropped once the 224-px store is written and recorded (docs/protocols.md)
    vist_dir = root / "datasets" / "vist"
    assert (vist_dir / "download" / "raw" / "00000_stats.json").is_file()
    assert not list((vist_dir / "download" / "raw").glob("*.parquet"))
    stored = pq.read_table(vist_dir / "images" / "00000.parquet", columns=["status", "width", "height"]).to_pylist()
    assert {(r["width"], r["height"]) for r in stored if r["status"] == "success"} == {(224, 224)}
    assert (vist_dir / "images" / "_done" / "00000.json").is_file()
    assert results["prepare visdial"]["images"]["success"] == 3
    coco = results["prepare coco"]
    assert coco["examples"] == 10 and coco["reference_images"]["success"] == 4
    parti = results["prepare partiprompts"]  # downloaded from the loopback server, pinned sha256 checked
    assert parti["decisions"] == {"gen": 592, "ret": 319, "same": 721}
    for name in ("cc3m-train", "cc3m-val", "vist", "visdial", "coco", "partiprompts"):
        assert (root / "datasets" / name / "manifest.json").is_file()
    urls = pq.read_table(root / "datasets" / "cc3m-train" / "examples" / "00000.parquet").column("url").to_pylist()
    assert all(u.startswith(SAMPLE_ORIGIN + "/cc3m/") for u in urls)
    # the prepared sources are the sample files as built with no server at all: no port reaches their hashes
    offline = build_sample(tmp_path / "offline")
    for name, path in (("cc3m-train", offline.cc3m_train), ("cc3m-val", offline.cc3m_val), ("vist", offline.vist_sis)):
        sources = json.loads((root / "datasets" / name / "manifest.json").read_text(encoding="utf-8"))["sources"]
        assert sources[0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest(), name


def test_bundled_files_are_in_the_real_formats():
    from importlib import resources

    files = resources.files("gill_eval.sample") / "files"
    sis = json.loads((files / "vist" / "val.story-in-sequence.json").read_text(encoding="utf-8"))
    assert all(isinstance(a, list) and len(a) == 1 for a in sis["annotations"])
    assert all(isinstance(a[0][k], str) for a in sis["annotations"] for k in ("story_id", "photo_flickr_id", "album_id"))
    assert all(isinstance(a[0]["worker_arranged_photo_order"], int) for a in sis["annotations"])
    assert any("url_o" not in image for image in sis["images"])
    visdial = json.loads((files / "visdial" / "visdial_1.0_val.json").read_text(encoding="utf-8"))
    assert not any(q.endswith("?") for q in visdial["data"]["questions"])
    first = (files / "cc3m" / "train.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")
    assert len(first) == 2 and first[1].startswith(SAMPLE_ORIGIN + "/") and first[0] != "caption"


def test_the_sample_builds_byte_identical_files(tmp_path):
    # the prepared datasets are keyed by their sources' sha256: two builds must give the same bytes
    import time

    build_sample(tmp_path / "a")
    time.sleep(2.1)  # a zip entry time has a 2 s resolution: a rebuild in another 2 s window must not differ
    build_sample(tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert any(f.suffix == ".zip" for f in files)
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
