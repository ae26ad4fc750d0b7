"""`prepare cc3m` against a loopback server: exact coverage, kill-and-resume, retry of failed rows, errors.

The expected counts come from the fixture's design (which route each row points at), not from the code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from httpserver import LoopbackServer
from typer.testing import CliRunner

from gill_eval.cli import app
from gill_eval.sample.make import synthetic_image

# (caption, route/name): 15 rows, shards of 3 rows.
ROWS = [
    ("the player staring intently at a computer screen .", "img/a0.jpg"),
    ("a dog runs along the beach .", "img/a1.jpg"),
    ("a dead link .", "missing/m0.jpg"),
    ("a slow but fine server .", "slowok/s0.jpg"),
    ("a server that never answers in time .", "sleep/t0.jpg"),
    ("half a jpeg .", "truncated/x0.jpg"),
    ("a web page instead of an image .", "text/h0"),
    ('person attends the premiere of "film" .', "img/a2.jpg"),
    ("a link that comes back later .", "flaky/f0.jpg"),
    ("slow one .", "slowok/s1.jpg"),
    ("slow two .", "slowok/s2.jpg"),
    ("a cup of coffee .", "img/a3.jpg"),
    ("another dead link .", "missing/m1.jpg"),
    ("slow three .", "slowok/s3.jpg"),
    ("a red flower .", "img/a4.jpg"),
]
EXPECTED = {"total": 15, "success": 9, "failed": 6,
            "failed_by_reason": {"decode_error": 2, "http_404": 3, "timeout": 1}}
OPTIONS = ["--processes", "1", "--threads", "2", "--timeout", "2", "--shard-size", "3", "--image-size", "32"]


def cli(data_dir: Path, *args: str):
    return CliRunner().invoke(app, ["--data-dir", str(data_dir), *args])


def write_tsv(path: Path, server) -> Path:
    path.write_text("".join(f"{caption}\t{server.url(route)}\n" for caption, route in ROWS), encoding="utf-8")
    return path


def read_folder(folder: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted(folder.glob("*.parquet"))])


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def server():
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def reference(server, tmp_path_factory):
    """One uninterrupted run of the fixture TSV."""
    root = tmp_path_factory.mktemp("cc3m-ref")
    tsv = write_tsv(root / "Train_GCC-training.tsv", server)
    result = cli(root / "data", "prepare", "cc3m", "--tsv", str(tsv), "--split", "train", *OPTIONS, "--json")
    assert result.exit_code == 0, result.output
    return root / "data", tsv, json.loads(result.stdout)


def test_coverage_counts_are_exact(reference):
    data, _, summary = reference
    assert summary["images"] == EXPECTED
    folder = data / "datasets" / "cc3m-train"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"]["images"] == EXPECTED
    images = read_folder(folder / "images")
    by_key = {r["key"]: r for r in images.to_pylist()}
    assert sorted(by_key) == [f"{i:09d}" for i in range(15)]
    expected_status = {"img": "success", "slowok": "success", "missing": "http_404", "flaky": "http_404",
                       "sleep": "timeout", "truncated": "decode_error", "text": "decode_error"}
    for i, (_, route) in enumerate(ROWS):
        row = by_key[f"{i:09d}"]
        assert row["status"] == expected_status[route.split("/")[0]], (i, route, row["error_message"])
        assert (row["image"] is not None) == (row["status"] == "success")
        if row["status"] == "success":
            assert (row["width"], row["height"]) == (32, 32)  # border mode pads to the square size
            assert row["sha256"] == hashlib.sha256(synthetic_image(route.split("/")[1])).hexdigest()
    examples = read_folder(folder / "examples").to_pylist()
    assert [e["caption"] for e in examples] == [c for c, _ in ROWS]  # the quote character survives


def test_kill_mid_run_then_resume_equals_uninterrupted_run(reference, server, tmp_path):
    ref_data, tsv, ref_summary = reference
    data = tmp_path / "data"
    raw = data / "datasets" / "cc3m-train" / "download" / "raw"
    before = server.requests.copy()
    server.slow_delay = 1.5
    # the `prepare` sub-app itself (what `gill-eval prepare` mounts), without importing every other area
    cmd = [sys.executable, "-c", "from gill_eval.datasets.cli import app; app()",
           "cc3m", "--tsv", str(tsv), "--split", "train", *OPTIONS]
    env = {**os.environ, "GILL_EVAL_DATA": str(data)}
    proc = subprocess.Popen(cmd, start_new_session=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (raw / "00000_stats.json").is_file():
            assert proc.poll() is None, "prepare ended before the first shard finished"
            assert time.monotonic() < deadline, "no shard finished in time"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        server.slow_delay = 0.0
    done = sorted(p.name for p in raw.glob("*_stats.json"))
    assert len(done) < 5, "the kill landed after the download finished; the test proves nothing"
    assert not (data / "datasets" / "cc3m-train" / "manifest.json").exists()

    result = cli(data, "prepare", "cc3m", "--tsv", str(tsv), "--split", "train", *OPTIONS, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images"] == ref_summary["images"]
    for sub in ("images", "examples"):
        got = read_folder(data / "datasets" / "cc3m-train" / sub)
        want = read_folder(ref_data / "datasets" / "cc3m-train" / sub)
        assert got.column("key").to_pylist() == [f"{i:09d}" for i in range(15)]
        assert got.equals(want), sub
    fetched = server.requests - before
    for _, route in ROWS[:3]:  # shard 0 finished before the kill: the resume did not fetch it again
        assert fetched["/" + route] == 1


def test_retry_failed_refetches_only_failures_and_merges(reference, server, tmp_path):
    ref_data, tsv, _ = reference
    data = tmp_path / "data"
    shutil.copytree(ref_data, data)
    before = server.requests.copy()
    server.healed = True
    try:
        result = cli(data, "prepare", "cc3m", "--tsv", str(tsv), "--split", "train", *OPTIONS,
                     "--retry-failed", "--json")
    finally:
        server.healed = False
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["images"] == {"total": 15, "success": 10, "failed": 5,
                                 "failed_by_reason": {"decode_error": 2, "http_404": 2, "timeout": 1}}
    assert summary["retries"] == [{"attempt": "retry-001", "retried": 6, "recovered": 1}]
    fetched = server.requests - before
    failed_routes = {"/" + r for _, r in ROWS if r.split("/")[0] in ("missing", "flaky", "sleep", "truncated", "text")}
    assert set(fetched) == failed_routes and all(n == 1 for n in fetched.values())
    images = read_folder(data / "datasets" / "cc3m-train" / "images")
    keys = images.column("key").to_pylist()
    assert keys == sorted(set(keys)) and len(keys) == 15
    flaky = images.filter(pc.equal(images.column("key"), "000000008")).to_pylist()[0]
    assert flaky["status"] == "success" and flaky["image"]


def test_malformed_tsv_is_one_line_error_and_keeps_earlier_output(reference, tmp_path):
    ref_data, tsv, _ = reference
    folder = ref_data / "datasets" / "cc3m-train"
    before = tree_digest(folder)
    bad = tmp_path / "bad.tsv"
    lines = tsv.read_text(encoding="utf-8").splitlines(keepends=True)
    bad.write_text("".join(lines[:2]) + "a caption without a url column\n" + "".join(lines[3:]), encoding="utf-8")
    result = cli(ref_data, "prepare", "cc3m", "--tsv", str(bad), "--split", "train", *OPTIONS)
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert message.count("\n") == 0
    assert str(bad) in message and "row 3" in message and "expected 2 tab-separated columns" in message
    assert tree_digest(folder) == before


def test_changed_source_is_refused_without_overwrite(reference, tmp_path):
    ref_data, tsv, _ = reference
    folder = ref_data / "datasets" / "cc3m-train"
    before = tree_digest(folder)
    other = tmp_path / "other.tsv"
    other.write_text("".join(tsv.read_text(encoding="utf-8").splitlines(keepends=True)[:4]), encoding="utf-8")
    result = cli(ref_data, "prepare", "cc3m", "--tsv", str(other), "--split", "train", *OPTIONS)
    assert result.exit_code == 2
    assert "--overwrite" in result.stderr and "sources.tsv" in result.stderr
    assert tree_digest(folder) == before


def test_export_gill_layout_reads_back_with_the_trainers_reader(reference, tmp_path):
    import pandas as pd

    ref_data, _, _ = reference
    out = tmp_path / "gill"
    result = cli(ref_data, "export", "gill-layout", str(out), "--split", "train", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == 9 and summary["skipped_without_image"] == 6
    frame = pd.read_csv(out / "datasets" / "cc3m_train.tsv", sep="\t")  # exactly as gill/data.py reads it
    assert list(frame.columns) == ["caption", "image"]
    ok_rows = [i for i, (_, r) in enumerate(ROWS) if r.split("/")[0] in ("img", "slowok")]
    assert frame["caption"].tolist() == [ROWS[i][0] for i in ok_rows]
    assert frame["image"].tolist() == [f"{i:09d}.jpg" for i in ok_rows]
    images = {r["key"]: r["image"] for r in read_folder(ref_data / "datasets" / "cc3m-train" / "images").to_pylist()}
    for name in frame["image"]:
        assert (out / "data" / "cc3m" / "training" / name).read_bytes() == images[name.removesuffix(".jpg")]
