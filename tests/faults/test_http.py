"""Slow, endless, redirecting and lying HTTP servers on 127.0.0.1: every transfer is bounded in time and
size, ends in one line (or a classified failed row for an image), and leaves no temporary file."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from faults.conftest import temporaries

from gill_eval.cli import app


def prepare(data: Path, url: str):
    return CliRunner().invoke(app, ["--data-dir", str(data), "prepare", "cc3m", "--tsv", url, "--split", "val"])


@pytest.mark.parametrize(("route", "env", "expected"), [
    ("trickle/a.tsv", {"GILL_EVAL_SOURCE_TIMEOUT": "1.5"}, "not finished after 1.5 s"),
    ("trickle/b.tsv", {"GILL_EVAL_SOURCE_MAX_BYTES": "100000"}, "announces 2000000000 bytes"),
    ("endless/c.tsv", {"GILL_EVAL_SOURCE_MAX_BYTES": "300000"}, "more than 300000 bytes"),
    ("loop/d.tsv", {}, "redirect"),
    ("lie/e.tsv", {}, "announced 100000 bytes but sent 10"),
    ("missing/f.tsv", {}, "HTTP Error 404"),
])
def test_bad_source_server_fails_in_bounded_time_in_one_line(route, env, expected, server, tmp_path, monkeypatch):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    data = tmp_path / "data"
    start = time.monotonic()
    result = prepare(data, server.url(route))
    elapsed = time.monotonic() - start
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and expected in lines[0] and server.url(route) in lines[0], result.stderr
    assert elapsed < 20, elapsed
    assert not temporaries(data) and not (data / "datasets").exists()


def test_redirect_to_a_good_file_is_followed(server, tmp_path):
    from gill_eval.datasets.sources import resolve_source

    server.files["g.tsv"] = b"a caption\thttp://127.0.0.1/img/a.jpg\n"
    source = resolve_source(server.url("redirect/g.tsv"), tmp_path / "sources")
    assert source.path.read_bytes() == server.files["g.tsv"]


def test_sigterm_during_a_source_download_leaves_no_temporary(cli, server, tmp_path):
    data = tmp_path / "data"
    proc = cli.start(data, "prepare", "cc3m", "--tsv", server.url("trickle/h.tsv"), "--split", "val")
    deadline = time.monotonic() + 120
    while not temporaries(data):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert not temporaries(data)


def test_trickling_and_endless_images_time_out_as_rows_within_the_deadline(cli, server, tmp_path):
    data = tmp_path / "data"
    tsv = tmp_path / "t.tsv"
    routes = ["img/t0.jpg", "trickle/t1.jpg", "endless/t2.jpg", "lie/t3.jpg"]
    tsv.write_text("".join(f"caption {i}\t{server.url(r)}\n" for i, r in enumerate(routes)))
    start = time.monotonic()
    result = cli.run(data, "prepare", "cc3m", "--tsv", str(tsv), "--split", "val", "--processes", "1",
                     "--threads", "4", "--timeout", "2", "--image-size", "32", timeout=200)
    assert result.returncode == 0, result.stderr
    images = pq.read_table(data / "datasets" / "cc3m-val" / "images" / "00000.parquet").to_pylist()
    status = {row["key"]: row["status"] for row in images}
    assert status == {"000000000": "success", "000000001": "timeout", "000000002": "timeout",
                      "000000003": "download_error"}, [(r["status"], r["error_message"]) for r in images]
    assert time.monotonic() - start < 180  # the 60 s streams did not hold the run (startup is the rest)
