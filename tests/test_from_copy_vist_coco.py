"""`prepare vist --from` and `prepare coco --from`: the bundled sample's copies imported as its download/zip.

VIST: the sample is prepared by download from the loopback server (as the quickstart does: the server answers
for the sample's host as the HTTP proxy); img2dataset itself then fetches every url_o of the SIS file into
its Parquet output (one output format is enough here: tests/test_from_copy.py takes each of img2dataset's
formats and the webdataset and Hugging Face readers through the CC3M round trip), and the import must give
the same keys, stories, statuses and pixels (GILL's 224 PNG). A Hugging Face copy without URLs joins by
photo id. COCO: Hugging Face folders built with `datasets` from the sample's image files, imported with
`--from`, must give the zip/folder path's keys and bytes; rows the captions file does not list are listed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_from_copy import ORIGINALS, assert_same_images, cli, images_of, run_img2dataset

from gill_eval.quickstart import serve_folder
from gill_eval.sample.make import build_sample

VIST_OPTIONS = ["--processes", "1", "--threads", "2", "--timeout", "3"]


@pytest.fixture(scope="module")
def vist(tmp_path_factory):
    """The sample's VIST prepared by download, and img2dataset's Parquet copy of every url_o (originals)."""
    root = tmp_path_factory.mktemp("vist-copy")
    sample = build_sample(root / "sample")
    sis = json.loads(sample.vist_sis.read_text(encoding="utf-8"))
    urls = root / "urls.parquet"
    pq.write_table(pa.table({"url": [i["url_o"] for i in sis["images"] if i.get("url_o")]}), urls)
    with serve_folder(sample.served) as port, pytest.MonkeyPatch.context() as mp:
        proxy = {"http_proxy": f"http://127.0.0.1:{port}", "no_proxy": "127.0.0.1,localhost"}
        for var, value in proxy.items():
            mp.setenv(var, value)
            mp.setenv(var.upper(), value)
        ref = root / "ref"
        result = cli(ref, "prepare", "vist", "--sis", str(sample.vist_sis), *VIST_OPTIONS, "--json")
        assert result.exit_code == 0, result.output
        copy = run_img2dataset(urls, root / "i2d", "parquet", env=proxy, caption_col=None, **ORIGINALS)
    return {"sis": sample.vist_sis, "ref": ref, "summary": json.loads(result.stdout), "copy": copy}


def vist_import(vist, data: Path, source: Path, *extra: str) -> dict:
    # no server now: anything not in the copy would fail to download, so a success proves the import
    result = cli(data, "prepare", "vist", "--sis", str(vist["sis"]), "--from", str(source), *VIST_OPTIONS, *extra,
                 "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_vist_img2dataset_copy_imports_as_the_download(vist, tmp_path):
    summary = vist_import(vist, tmp_path / "data", vist["copy"])
    ref = vist["summary"]
    # the sample's design (tests/test_prepare_quickstart.py): 14 photos with url_o, one of them a 404
    assert ref["images"] == {"total": 14, "success": 13, "failed": 1, "failed_by_reason": {"http_404": 1}}
    assert summary["images"] == ref["images"] and summary["stories"] == ref["stories"]
    assert summary["photos_without_url_o"] == ref["photos_without_url_o"] == 1
    # img2dataset fetched all 15 url_o links: 5308 belongs to the album but to no story, so it is not joined
    assert summary["imported"] == {"rows": 15, "joined": 14, "caption_mismatch": 0, "not_in_sis": 1,
                                   "unverifiable": 0, "duplicates": 0}
    rejected = pq.read_table(summary["rejected_rows"]).to_pylist()
    assert [(r["url"].rsplit("/", 1)[1], r["reason"]) for r in rejected] == [("5308.jpg", "not_in_sis")]
    got, want = images_of(tmp_path / "data", "vist"), images_of(vist["ref"], "vist")
    assert_same_images(got, want)
    assert {(r["width"], r["height"]) for r in got.values() if r["status"] == "success"} == {(224, 224)}
    folder = tmp_path / "data" / "datasets" / "vist"
    assert pq.read_table(folder / "examples").equals(pq.read_table(vist["ref"] / "datasets" / "vist" / "examples"))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["options"]["store"] == "gill-224"  # what `bench vist` requires
    assert [s.get("format") for s in manifest["sources"]] == [None, "img2dataset"]


def test_vist_hf_copy_without_urls_joins_by_photo_id(vist, tmp_path):
    import datasets

    rows = {r["url"].rsplit("/", 1)[1].removesuffix(".jpg"): r
            for p in sorted(vist["copy"].glob("*.parquet")) for r in pq.read_table(p).to_pylist()}
    kept = sorted(k for k, r in rows.items() if r["status"] == "success" and k != "5301")  # 5301: not in the copy
    features = datasets.Features({"key": datasets.Value("string"), "image": datasets.Image()})
    ds = datasets.Dataset.from_list([{"key": k, "image": {"bytes": rows[k]["jpg"], "path": None}} for k in kept]
                                    + [{"key": "9999", "image": {"bytes": rows["5302"]["jpg"], "path": None}}],
                                    features=features)
    ds.save_to_disk(str(tmp_path / "hf"))
    summary = vist_import(vist, tmp_path / "data", tmp_path / "hf")
    assert summary["imported"]["joined"] == len(kept) and summary["imported"]["not_in_sis"] == 1
    got, want = images_of(tmp_path / "data", "vist"), images_of(vist["ref"], "vist")
    assert got["5301"]["status"] == "missing_from_source"
    assert got["7107"]["status"] == "missing_from_source"  # the copy holds no row for the 404
    assert_same_images({k: v for k, v in got.items() if k not in ("5301", "7107")},
                       {k: v for k, v in want.items() if k not in ("5301", "7107")})


def hf_copy(folder: Path, rows: list[dict], parquet: bool = False) -> Path:
    """A Hugging Face copy: ``save_to_disk``, or a script-free repository (``data/validation-*.parquet``)."""
    import datasets

    columns = {"image": datasets.Image(), "image_id": datasets.Value("int64"), "file_name": datasets.Value("string")}
    features = datasets.Features({name: columns[name] for name in rows[0]})
    ds = datasets.Dataset.from_list(rows, features=features)
    if parquet:
        (folder / "data").mkdir(parents=True)
        ds.to_parquet(str(folder / "data" / "validation-00000-of-00001.parquet"))
    else:
        datasets.DatasetDict({"validation": ds}).save_to_disk(str(folder))
    return folder


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return build_sample(tmp_path_factory.mktemp("coco-copy") / "sample")


def test_coco_hf_copy_imports_as_the_image_folder_and_lists_unknown_rows(sample, tmp_path):
    files = {p.name: p.read_bytes() for p in sample.coco_images.iterdir()}
    name = "COCO_val2014_{:012d}.jpg".format
    rows = [{"image": {"bytes": files[name(i)], "path": None}, "image_id": i, "file_name": name(i)} for i in (42, 73)]
    rows += [rows[1],  # a row per caption repeats the image: a duplicate
             {"image": {"bytes": files[name(139)], "path": None}, "image_id": 139, "file_name": f"val2014/{name(139)}"},
             {"image": {"bytes": files[name(42)], "path": None}, "image_id": 999, "file_name": name(999)},
             {"image": {"bytes": files[name(42)], "path": None}, "image_id": 285, "file_name": name(42)}]
    copy = hf_copy(tmp_path / "hf", rows)
    options = ["prepare", "coco", "--captions", str(sample.coco_captions), "--num-captions", "10", "--json"]
    ref = cli(tmp_path / "ref", *options, "--images", str(sample.coco_images))
    got = cli(tmp_path / "data", *options, "--from", str(copy))
    assert ref.exit_code == 0 and got.exit_code == 0, ref.output + got.output
    summary = json.loads(got.stdout)
    assert summary["imported"] == {"rows": 6, "joined": 3, "not_in_captions": 1, "file_name_mismatch": 1,
                                   "bad_image_id": 0, "duplicates": 1}
    assert sorted((r["image_id"], r["reason"]) for r in pq.read_table(summary["rejected_rows"]).to_pylist()) == [
        ("285", "file_name_mismatch"), ("999", "not_in_captions")]
    assert summary["reference_images"] == {"total": 4, "success": 3, "failed": 1,
                                           "failed_by_reason": {"missing_file": 1}}
    assert summary["caption_manifest_sha256"] == json.loads(ref.stdout)["caption_manifest_sha256"]
    mine, want = images_of(tmp_path / "data", "coco"), images_of(tmp_path / "ref", "coco")
    assert sorted(mine) == sorted(want) == ["139", "285", "42", "73"]
    assert mine["285"]["status"] == "missing_file"  # its only row named another image's file: never joined
    for key in ("42", "73", "139"):
        assert mine[key]["image"] == want[key]["image"] == files[name(int(key))]
        assert mine[key]["sha256"] == want[key]["sha256"] and mine[key]["width"] == want[key]["width"]
    manifest = json.loads((tmp_path / "data" / "datasets" / "coco" / "manifest.json").read_text())
    assert manifest["sources"][1]["format"] == "hf" and manifest["sources"][1]["path"] == str(copy)


def test_coco2017_parquet_repository_joins_by_file_name(sample, tmp_path):
    files = {p.name: p.read_bytes() for p in sample.coco2017_images.iterdir()}
    copy = hf_copy(tmp_path / "repo", [{"image": {"bytes": data, "path": None}, "file_name": name}
                                       for name, data in sorted(files.items())], parquet=True)
    options = ["prepare", "coco", "--year", "2017", "--captions", str(sample.coco2017_captions), "--json"]
    ref = cli(tmp_path / "ref", *options, "--images", str(sample.coco2017_images))
    got = cli(tmp_path / "data", *options, "--from", str(copy))
    assert ref.exit_code == 0 and got.exit_code == 0, ref.output + got.output
    assert json.loads(got.stdout)["images"] == json.loads(ref.stdout)["images"]  # image 632: missing in both
    mine, want = images_of(tmp_path / "data", "coco2017"), images_of(tmp_path / "ref", "coco2017")
    assert {k: (r["status"], r["image"]) for k, r in mine.items()} == {k: (r["status"], r["image"]) for k, r in want.items()}


def one_line_error(result, *fragments: str) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert all(f in lines[0] for f in fragments), lines[0]
    return lines[0]


def test_bad_input_is_one_line_and_keeps_what_was_written(sample, tmp_path):
    options = ["prepare", "coco", "--captions", str(sample.coco_captions), "--num-captions", "10"]
    assert cli(tmp_path / "data", *options, "--images", str(sample.coco_images)).exit_code == 0
    manifest = tmp_path / "data" / "datasets" / "coco" / "manifest.json"
    before = manifest.read_bytes()
    one_line_error(cli(tmp_path / "data", *options, "--images", str(sample.coco_images), "--from", str(tmp_path)),
                   "exactly one of --images", "--from")
    one_line_error(cli(tmp_path / "data", *options), "exactly one of --images")
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "notes.txt").write_text("not a dataset")
    one_line_error(cli(tmp_path / "data", *options, "--from", str(unknown)), str(unknown), "--from-format")
    one_line_error(cli(tmp_path / "data", *options, "--from", str(unknown), "--from-format", "webdataset"),
                   "--from-format hf")
    one_line_error(cli(tmp_path / "data", "prepare", "vist", "--sis", str(sample.vist_sis), "--from", str(unknown)),
                   str(unknown), "--from-format")
    assert manifest.read_bytes() == before
