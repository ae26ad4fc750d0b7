"""`prepare` keeps img2dataset's own messages off the terminal (docs/troubleshooting.md): they go to
``download/img2dataset.log``, gill-eval shows one progress bar of its own, ``--verbose`` shows them as before,
and a failed img2dataset run shows the log's last lines and names the log in its one-line error.

The CLI runs as a subprocess, like a user's shell runs it: img2dataset is a child process writing to file
descriptors, so only the process's own captured stdout and stderr show what reached the terminal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from httpserver import LoopbackServer

# 5 rows, shards of 2: 3 shards; the dead link makes 4 successes (the fixture's design, not the code's output)
ROWS = [("a dog .", "img/o0.jpg"), ("a cat .", "img/o1.jpg"), ("a dead link .", "missing/o2.jpg"),
        ("a tree .", "img/o3.jpg"), ("a cup .", "img/o4.jpg")]
OPTIONS = ["--processes", "1", "--threads", "2", "--timeout", "5", "--shard-size", "2", "--image-size", "32"]
# lines img2dataset prints itself (img2dataset/main.py, reader.py, logger.py)
BANNERS = ("Starting the downloading of this file", "Sharding file number 1 of 1", "Downloading starting now",
           "images per sec")
CLI = "from gill_eval.cli import main; main()"


@pytest.fixture(scope="module")
def tsv(tmp_path_factory: pytest.TempPathFactory):
    with LoopbackServer() as server:
        path = tmp_path_factory.mktemp("output-tsv") / "cc3m.tsv"
        path.write_text("".join(f"{caption}\t{server.url(route)}\n" for caption, route in ROWS), encoding="utf-8")
        yield path


def prepare(data: Path, tsv: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", CLI, "--data-dir", str(data), *flags,
               "prepare", "cc3m", "--tsv", str(tsv), "--split", "val", *OPTIONS, "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "1000"}  # no wrapping of the paths in messages
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)


def download_dir(data: Path) -> Path:
    return data / "datasets" / "cc3m-val" / "download"


def test_default_run_logs_img2dataset_and_shows_one_progress_bar(tsv, tmp_path):
    data = tmp_path / "data"
    result = prepare(data, tsv)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # stdout is the --json result alone
    assert summary["images"]["total"] == 5 and summary["images"]["success"] == 4
    log = download_dir(data) / "img2dataset.log"
    text = log.read_text(encoding="utf-8")
    for banner in BANNERS:
        assert banner not in result.stderr, result.stderr
        assert banner in text, text
    header = text.splitlines()[0]
    assert header.startswith("=== ") and " UTC: " in header and "gill_eval.datasets.img2dataset_run" in header
    assert f"its messages: {log}" in result.stderr
    [bar] = [line for line in result.stderr.splitlines() if line.startswith("downloading images")]
    assert " 5/5 " in bar  # every row of the TSV counted, by gill-eval's own bar
    assert not (download_dir(data) / ".img2dataset-rows").exists()


def test_verbose_shows_img2dataset_messages_and_keeps_stdout_json(tsv, tmp_path):
    data = tmp_path / "data"
    result = prepare(data, tsv, "--verbose")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["images"]["success"] == 4
    for banner in BANNERS:
        assert banner in result.stderr, result.stderr
    assert not (download_dir(data) / "img2dataset.log").exists()


def test_failed_run_shows_the_log_tail_and_names_the_log(tsv, tmp_path):
    data = tmp_path / "data"
    work = download_dir(data)
    work.mkdir(parents=True)
    (work / "input.parquet").write_bytes(b"PAR1 not a parquet file")  # a damaged URL list: img2dataset fails on it
    log = work / "img2dataset.log"
    log.write_text("a line of an earlier run\n", encoding="utf-8")
    result = prepare(data, tsv)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "img2dataset exited with status 1" in errors[0] and str(log) in errors[0], errors[0]
    assert not any(line.startswith("Traceback") for line in result.stderr.splitlines())  # not gill-eval's own
    text = log.read_text(encoding="utf-8")
    assert text.startswith("a line of an earlier run\n=== ")  # appended, the earlier run kept
    this_run = text.split("\n", 1)[1].splitlines()
    shown = [line[3:].strip() for line in result.stderr.splitlines() if line.startswith("  |")]
    assert shown == [line.strip() for line in this_run[-20:]]  # its last 20 lines, none of the earlier run's
    assert any("parquet" in line.lower() for line in shown)  # the reason img2dataset gave


def test_rows_done_counts_finished_shards_and_row_ticks(tmp_path):
    from gill_eval.datasets.download import _RowsDone

    raw, ticks = tmp_path / "raw", tmp_path / "ticks"
    rows = _RowsDone(raw, ticks, total=5)
    assert rows.now() == 0  # img2dataset has not made raw/ yet
    raw.mkdir()
    (raw / "00000_stats.json").write_text('{"count": 2}')
    (raw / "00001_stats.json").write_text('{"cou')  # being written: counted at a later poll
    assert rows.now() == 2
    ticks.write_bytes(b"...")  # 3 rows done, shard 1 not finished yet
    assert rows.now() == 3
    (raw / "00001_stats.json").write_text('{"count": 2}')
    assert rows.in_shards() == 4 and rows.now() == 4
    ticks.write_bytes(b"." * 9)  # never more than the rows there are
    assert rows.now() == 5


def test_workers_tick_once_per_row_whatever_the_retries(tmp_path):
    """img2dataset's per-row download, as patched in its workers: one byte per row, a 404 retried twice included."""
    ticks = tmp_path / "ticks"
    code = (
        "import sys\n"
        "from gill_eval.datasets.img2dataset_run import _patch_downloader\n"
        "import img2dataset.downloader as d\n"
        "_patch_downloader(); _patch_downloader()\n"  # as Spark tasks do, once per call: still one wrapper
        "for i, url in enumerate(sys.argv[1:]):\n"
        "    d.download_image_with_retry((i, url), timeout=5, retries=2, user_agent_token=None,\n"
        "                                disallowed_header_directives=None)\n"
    )
    with LoopbackServer() as server:
        urls = [server.url("img/t0.jpg"), server.url("missing/t1.jpg"), server.url("img/t2.jpg")]
        env = {**os.environ, "GILL_EVAL_ROW_TICKS": str(ticks), "NO_ALBUMENTATIONS_UPDATE": "1"}
        result = subprocess.run([sys.executable, "-c", code, *urls], env=env, capture_output=True, text=True,
                                timeout=300, check=False)
        assert result.returncode == 0, result.stderr
        assert server.requests["/missing/t1.jpg"] == 3  # retried: the wrapper sits above the retries
    assert ticks.read_bytes() == b"..."
