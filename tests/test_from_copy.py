"""`prepare cc3m --from DIR`: copies written by img2dataset itself, webdataset and Hugging Face folders, imported.

The reference is a download of the same TSV from a loopback server; img2dataset (the real tool, in a
process of its own) then downloads the same URLs into each of its output formats, and each copy imported
with ``--from`` must give the same keys, captions, statuses and pixels. Also ``export gill-layout --split
val`` names each file by the format of its bytes.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from httpserver import LoopbackServer
from PIL import Image
from typer.testing import CliRunner

from gill_eval.cli import app

# (caption, route/name): successes, a 404, an HTML page (decode_error), a truncated JPEG (decode_error).
ROWS = [
    ("a dog runs along the beach .", "img/a0.jpg"),
    ("a dead link .", "missing/m0.jpg"),
    ('person attends the premiere of "film" .', "img/a1.jpg"),
    ("a web page instead of an image .", "text/h0"),
    ("a cup of coffee .", "img/a2.jpg"),
    ("half a jpeg .", "truncated/x0.jpg"),
    ("a red flower .", "img/a3.jpg"),
]
OPTIONS = ["--processes", "1", "--threads", "2", "--timeout", "3", "--shard-size", "3", "--image-size", "32"]
# img2dataset's own runs: another shard size than gill-eval's, so rows cross shard boundaries
I2D = {"input_format": "parquet", "url_col": "url", "caption_col": "caption", "processes_count": 1,
       "thread_count": 2, "timeout": 3, "number_sample_per_shard": 4, "enable_wandb": False, "compute_hash": "sha256"}
ORIGINALS = {"resize_mode": "no", "disable_all_reencoding": True, "image_size": 32}  # what `--store center-crop` reads


def cli(data_dir: Path, *args: str):
    return CliRunner().invoke(app, ["--data-dir", str(data_dir), *args])


def run_img2dataset(urls: Path, out: Path, output_format: str, env: dict[str, str] | None = None, **options) -> Path:
    """img2dataset.download in a child process (its pool spawns; a child's main must be importable); ``env``
    adds to its environment (an HTTP proxy)."""
    kwargs = {**I2D, **options, "url_list": str(urls), "output_format": output_format, "output_folder": str(out)}
    script = f"import img2dataset, json\nif __name__ == '__main__':\n    img2dataset.download(**json.loads({json.dumps(json.dumps(kwargs))}))\n"
    (out.parent / "run_i2d.py").write_text(script)
    proc = subprocess.run([sys.executable, str(out.parent / "run_i2d.py")], capture_output=True, text=True,
                          env={"NO_ALBUMENTATIONS_UPDATE": "1", "PATH": "/usr/bin:/bin", **(env or {})}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def images_of(data: Path, name: str) -> dict[str, dict]:
    folder = data / "datasets" / name / "images"
    return {r["key"]: r for p in sorted(folder.glob("*.parquet")) for r in pq.read_table(p).to_pylist()}


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def assert_same_images(got: dict[str, dict], want: dict[str, dict], statuses: bool = True) -> None:
    assert sorted(got) == sorted(want)
    for key, row in want.items():
        if statuses:
            assert got[key]["status"] == row["status"], (key, got[key]["error_message"])
        if row["status"] == "success":
            assert got[key]["status"] == "success", key
            np.testing.assert_array_equal(pixels(got[key]["image"]), pixels(row["image"]))
            assert got[key]["url"] == row["url"]


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """The downloaded reference (val) and img2dataset's copies of the same URLs (original bytes)."""
    root = tmp_path_factory.mktemp("copies")
    with LoopbackServer() as server:
        tsv = root / "cc3m.tsv"
        tsv.write_text("".join(f"{c}\t{server.url(r)}\n" for c, r in ROWS), encoding="utf-8")
        urls = root / "urls.parquet"
        pq.write_table(pa.table({"caption": [c for c, _ in ROWS], "url": [server.url(r) for _, r in ROWS]}), urls)
        ref = root / "ref"
        result = cli(ref, "prepare", "cc3m", "--tsv", str(tsv), "--split", "val", *OPTIONS, "--json")
        assert result.exit_code == 0, result.output
        out = {fmt: run_img2dataset(urls, root / f"i2d-{fmt}", fmt, **ORIGINALS)
               for fmt in ("parquet", "webdataset", "files")}
    return {"root": root, "tsv": tsv, "ref": ref, **out}


def imported(copies, tmp_path: Path, source: Path, split: str = "val", *extra: str) -> tuple[Path, dict]:
    data = tmp_path / "data"
    result = cli(data, "prepare", "cc3m", "--tsv", str(copies["tsv"]), "--split", split, "--from", str(source),
                 *OPTIONS, *extra, "--json")
    assert result.exit_code == 0, result.output
    return data, json.loads(result.stdout)


@pytest.mark.parametrize("fmt", ["parquet", "webdataset", "files"])
def test_each_img2dataset_output_format_imports_as_the_download(copies, tmp_path, fmt):
    data, summary = imported(copies, tmp_path, copies[fmt])
    reference = images_of(copies["ref"], "cc3m-val")
    assert summary["images"] == {"total": 7, "success": 4, "failed": 3,
                                 "failed_by_reason": {"decode_error": 2, "http_404": 1}}
    assert_same_images(images_of(data, "cc3m-val"), reference)
    examples = pq.read_table(data / "datasets" / "cc3m-val" / "examples").to_pylist()
    assert [e["caption"] for e in examples] == [c for c, _ in ROWS]
    manifest = json.loads((data / "datasets" / "cc3m-val" / "manifest.json").read_text())
    assert [s.get("format") for s in manifest["sources"]] == [None, "img2dataset"]
    assert manifest["sources"][1]["path"] == str(copies[fmt])
    assert summary["imported"]["joined"] == 7 and summary["imported"]["caption_mismatch"] == 0


def copy_rows(folder: Path) -> dict[str, dict]:
    """img2dataset's Parquet copy by URL."""
    return {r["url"]: r for p in sorted(folder.glob("*.parquet")) for r in pq.read_table(p).to_pylist()}


def test_train_split_keeps_the_copys_bytes_and_webdataset_reader_joins_by_url(copies, tmp_path):
    # train stores img2dataset's bytes (`--store img2dataset`): the copy's bytes, unchanged; bytes that do not
    # decode (the HTML page, the truncated JPEG, both saved by img2dataset as they came) are counted
    data, summary = imported(copies, tmp_path, copies["parquet"], "train")
    assert summary["images"]["failed_by_reason"] == {"decode_error": 2, "http_404": 1}
    source = copy_rows(copies["parquet"])
    for key, row in images_of(data, "cc3m-train").items():
        route = ROWS[int(key)][1]
        assert row["status"] == {"img": "success", "missing": "http_404"}.get(route.split("/")[0], "decode_error")
        if row["status"] == "success":
            assert row["image"] == source[row["url"]]["jpg"] and row["width"] == Image.open(io.BytesIO(row["image"])).width
    # the generic webdataset reader (the `webdataset` library) over img2dataset's tars: only samples, so
    # the row img2dataset failed on (the 404) is missing from that copy
    data2, summary2 = imported(copies, tmp_path / "wds", copies["webdataset"], "val", "--from-format", "webdataset")
    assert summary2["images"]["failed_by_reason"] == {"decode_error": 2, "missing_from_source": 1}
    assert_same_images(images_of(data2, "cc3m-val"), images_of(copies["ref"], "cc3m-val"), statuses=False)


def test_hf_dataset_with_a_wrong_caption_and_a_foreign_row_is_reported_not_joined(copies, tmp_path):
    import datasets

    ok = sorted((r for r in copy_rows(copies["parquet"]).values() if r["status"] == "success"), key=lambda r: r["key"])
    captions = [r["caption"] for r in ok]
    captions[1] = "a caption someone edited ."
    foreign = {"image": {"bytes": ok[0]["jpg"], "path": None}, "caption": "not in the tsv", "url": "http://example.com/x.jpg"}
    features = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string"),
                                  "url": datasets.Value("string")})
    ds = datasets.Dataset.from_list(
        [{"image": {"bytes": r["jpg"], "path": None}, "caption": c, "url": r["url"]} for r, c in zip(ok, captions)]
        + [foreign], features=features)
    ds.save_to_disk(str(tmp_path / "hf"))
    data, summary = imported(copies, tmp_path, tmp_path / "hf")  # format detected
    assert summary["imported"] == {"rows": 7, "joined": 5, "caption_mismatch": 1, "not_in_tsv": 1,
                                   "unverifiable": 0, "duplicates": 0}
    rejected = pq.read_table(summary["rejected_rows"]).to_pylist()
    assert sorted((r["reason"], r["caption"]) for r in rejected) == [
        ("caption_mismatch", "a caption someone edited ."), ("not_in_tsv", "not in the tsv")]
    got, want = images_of(data, "cc3m-val"), images_of(copies["ref"], "cc3m-val")
    edited = next(k for k, r in want.items() if r["url"] == ok[1]["url"])
    assert got[edited]["status"] == "missing_from_source"  # never joined under the TSV's caption
    assert_same_images({k: v for k, v in got.items() if k != edited},
                       {k: v for k, v in want.items() if k != edited}, statuses=False)


def test_rerun_resumes_and_a_changed_copy_is_refused(copies, tmp_path):
    data, first = imported(copies, tmp_path, copies["parquet"])
    again = cli(data, "prepare", "cc3m", "--tsv", str(copies["tsv"]), "--split", "val", "--from",
                str(copies["parquet"]), *OPTIONS, "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["images"] == first["images"]
    other = cli(data, "prepare", "cc3m", "--tsv", str(copies["tsv"]), "--split", "val", "--from",
                str(copies["files"]), *OPTIONS)
    assert other.exit_code == 2 and "sources.from" in other.output


def test_export_gill_layout_val_names_files_by_their_format(copies, tmp_path):
    import pandas as pd

    out = tmp_path / "gill"
    result = cli(copies["ref"], "export", "gill-layout", str(out), "--split", "val", "--json")
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out / "datasets" / "cc3m_val.tsv", sep="\t")  # as gill/data.py reads it
    stored = images_of(copies["ref"], "cc3m-val")
    assert len(frame) == 4
    for name in frame["image"]:
        path = out / "data" / "cc3m" / "validation" / name
        with Image.open(path) as im:
            assert (im.format, path.suffix) == ("PNG", ".png")  # val holds lossless PNG FID references
        assert path.read_bytes() == stored[Path(name).stem]["image"]


def test_export_hf_opens_with_datasets_load_dataset(copies, tmp_path):
    import datasets

    out = tmp_path / "hf"
    result = cli(copies["ref"], "export", "hf", str(out), "--dataset", "cc3m-val", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 7
    loaded = datasets.load_dataset("parquet", data_dir=str(out), cache_dir=str(tmp_path / "cache"))
    split = loaded["validation"]
    assert isinstance(split.features["image"], datasets.Image)
    stored = images_of(copies["ref"], "cc3m-val")
    assert split["key"] == sorted(stored) and split["caption"] == [c for c, _ in ROWS]
    for row in split:
        want = stored[row["key"]]
        assert row["status"] == want["status"]
        if want["status"] == "success":
            np.testing.assert_array_equal(np.asarray(row["image"].convert("RGB")), pixels(want["image"]))
        else:
            assert row["image"] is None
    manifest = json.loads((copies["ref"] / "datasets" / "cc3m-val" / "manifest.json").read_text())
    card = (out / "README.md").read_text()
    assert "path: data/validation-*.parquet" in card and manifest["sources"][0]["sha256"] in card
    # and back: the export is a script-free repository of data files (`load_dataset(DIR)`), without URLs, so
    # rows join by key with their captions checked; the rows it holds without an image are missing
    data, summary = imported(copies, tmp_path / "back", out, "val", "--from-format", "hf")
    assert summary["imported"]["joined"] == 7 and summary["images"]["failed_by_reason"] == {"missing_from_source": 3}
    assert_same_images(images_of(data, "cc3m-val"), stored, statuses=False)


def test_export_webdataset_reads_back_with_webdataset(copies, tmp_path):
    import webdataset as wds

    out = tmp_path / "wds"
    result = cli(copies["ref"], "export", "webdataset", str(out), "--dataset", "cc3m-val", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"folder": str(out), "shards": 1, "samples": 4, "without_image": 3}
    stored = images_of(copies["ref"], "cc3m-val")
    samples = list(wds.WebDataset(sorted(str(p) for p in out.glob("*.tar")), shardshuffle=False))
    assert [s["__key__"] for s in samples] == sorted(k for k, r in stored.items() if r["status"] == "success")
    for sample in samples:
        assert sample["png"] == stored[sample["__key__"]]["image"]
        assert sample["txt"].decode() == ROWS[int(sample["__key__"])][0]
        assert json.loads(sample["json"])["status"] == "success"
