"""`prepare cc3m --distributor pyspark` on a local Spark gives what the multiprocessing distributor gives.

The same fixture TSV as test_prepare_cc3m.py (15 rows, shards of 3, against the loopback server) is
prepared once with each distributor, then once more with ``--retry-failed`` after the flaky route heals.
Shards, keys, statuses, image bytes and coverage must be equal, and equal to the fixture's design. Spark's
own event log shows that Spark ran the download: one task per shard, in an application named by gill-eval.

Spark's master defaults to ``local[2]``; ``GILL_EVAL_TEST_SPARK_MASTER`` picks another, e.g.
``local-cluster[2,1,1024]`` (two executor processes: slower to start) or a standalone ``spark://`` URL.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from httpserver import LoopbackServer
from test_prepare_cc3m import EXPECTED, OPTIONS, ROWS, cli, read_folder, write_tsv

SPARK_INSTALL = "pip install -e '.[spark]' (pyspark)"
RETRY_EXPECTED = {"total": 15, "success": 10, "failed": 5,
                  "failed_by_reason": {"decode_error": 2, "http_404": 2, "timeout": 1}}
FAILED_ROUTES = {"/" + r for _, r in ROWS if r.split("/")[0] in ("missing", "flaky", "sleep", "truncated", "text")}


@pytest.fixture(scope="session")
def spark_master(tmp_path_factory):
    """A Spark configuration for every Spark test of the session: small, quick to start, event log on."""
    if importlib.util.find_spec("pyspark") is None:
        pytest.skip(f"pyspark is not installed: {SPARK_INSTALL}")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("pyspark needs a Java runtime (17+): apt-get install openjdk-17-jre-headless")
    root = tmp_path_factory.mktemp("spark")
    (root / "events").mkdir()
    jvm = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"  # the JVMs start in half the CPU time
    settings = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.extraJavaOptions": jvm,
        "spark.executor.extraJavaOptions": jvm,
        "spark.local.dir": str(root / "local"),
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": (root / "events").as_uri(),
        "spark.eventLog.rolling.enabled": "false",  # one plain JSON-lines file per application
        "spark.eventLog.compress": "false",
    }
    (root / "spark-defaults.conf").write_text("".join(f"{k} {v}\n" for k, v in settings.items()), encoding="utf-8")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SPARK_CONF_DIR", str(root))  # Spark's own way to configure a session: what users do too
        env.setenv("SPARK_LOCAL_IP", "127.0.0.1")
        yield {"master": os.environ.get("GILL_EVAL_TEST_SPARK_MASTER", "local[2]"), "events": root / "events"}


def _spark_apps(events: Path, seen: set[Path]) -> list[list[dict]]:
    """The event logs Spark wrote since ``seen`` (which is updated), each as its list of events."""
    new = sorted(set(events.iterdir()) - seen)
    seen.update(new)
    return [[json.loads(line) for line in p.read_text(encoding="utf-8").splitlines()] for p in new]


def _prepare(data: Path, tsv: Path, *extra: str) -> dict:
    result = cli(data, "prepare", "cc3m", "--tsv", str(tsv), "--split", "train", *OPTIONS, *extra, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def runs(spark_master, tmp_path_factory):
    """Each distributor: a first run, then a copy of it retried after the flaky route healed."""
    root = tmp_path_factory.mktemp("cc3m-spark")
    seen: set[Path] = set()
    out: dict = {}
    with LoopbackServer() as server:
        tsv = write_tsv(root / "Train_GCC-training.tsv", server)
        for name, extra in (("multiprocessing", ()),
                            ("pyspark", ("--distributor", "pyspark", "--spark-master", spark_master["master"]))):
            data = root / name
            first = _prepare(data, tsv, *extra)
            first_apps = _spark_apps(spark_master["events"], seen)
            shutil.copytree(data, root / f"{name}-retry")
            before = server.requests.copy()
            server.healed = True
            try:
                retried = _prepare(root / f"{name}-retry", tsv, *extra, "--retry-failed")
            finally:
                server.healed = False
            out[name] = {"data": data, "summary": first, "apps": first_apps, "retry_data": root / f"{name}-retry",
                         "retry_summary": retried, "retry_apps": _spark_apps(spark_master["events"], seen),
                         "retry_fetched": server.requests - before}
    return out


def _folder(data: Path, sub: str) -> Path:
    return data / "datasets" / "cc3m-train" / sub


def _assert_same_shards(a: Path, b: Path) -> None:
    for sub in ("images", "examples"):
        names_a = sorted(p.name for p in _folder(a, sub).glob("*.parquet"))
        assert names_a == sorted(p.name for p in _folder(b, sub).glob("*.parquet")), sub
        for name in names_a:  # the same rows in the same shard, byte for byte (images, hashes, errors)
            assert pq.read_table(_folder(a, sub) / name).equals(pq.read_table(_folder(b, sub) / name)), (sub, name)


def _task_count(app: list[dict]) -> int:
    return sum(e["Event"] == "SparkListenerTaskEnd" and e["Task End Reason"]["Reason"] == "Success" for e in app)


def test_spark_download_equals_multiprocessing(runs):
    mp, spark = runs["multiprocessing"], runs["pyspark"]
    assert spark["summary"]["images"] == mp["summary"]["images"] == EXPECTED
    _assert_same_shards(spark["data"], mp["data"])
    keys = read_folder(_folder(spark["data"], "images")).column("key").to_pylist()
    assert keys == [f"{i:09d}" for i in range(15)]
    assert len(list(_folder(spark["data"], "images").glob("*.parquet"))) == 5  # 15 rows / 3 per shard
    manifest = json.loads((_folder(spark["data"], "manifest.json")).read_text())
    assert manifest["options"]["distributor"] == "pyspark"
    # Spark, not a fallback, downloaded: one application, one successful task per shard
    assert mp["apps"] == [] and len(spark["apps"]) == 1
    start = next(e for e in spark["apps"][0] if e["Event"] == "SparkListenerApplicationStart")
    assert start["App Name"] == "gill-eval img2dataset"
    assert _task_count(spark["apps"][0]) == 5


def test_spark_retry_failed_equals_multiprocessing(runs):
    mp, spark = runs["multiprocessing"], runs["pyspark"]
    assert spark["retry_summary"]["images"] == mp["retry_summary"]["images"] == RETRY_EXPECTED
    assert spark["retry_summary"]["retries"] == mp["retry_summary"]["retries"] == [
        {"attempt": "retry-001", "retried": 6, "recovered": 1}]
    _assert_same_shards(spark["retry_data"], mp["retry_data"])
    for run in (mp, spark):  # each failed row fetched again exactly once, nothing else
        assert set(run["retry_fetched"]) == FAILED_ROUTES and all(n == 1 for n in run["retry_fetched"].values())
    assert len(spark["retry_apps"]) == 1 and _task_count(spark["retry_apps"][0]) == 2  # 6 failed rows, 3 per shard


def test_spark_master_needs_the_pyspark_distributor(tmp_path):
    tsv = tmp_path / "a.tsv"
    tsv.write_text("a caption\thttp://127.0.0.1:9/img/a.jpg\n", encoding="utf-8")
    result = cli(tmp_path / "data", "prepare", "cc3m", "--tsv", str(tsv), "--split", "train",
                 "--spark-master", "spark://127.0.0.1:7077")
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert message.count("\n") == 0 and "--spark-master" in message and "--distributor pyspark" in message
    assert not (tmp_path / "data" / "datasets").exists()
