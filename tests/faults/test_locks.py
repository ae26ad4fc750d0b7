"""Two runs on one data root: prepare refuses the second one in one line, features and bench split the work;
a lock left by a killed run is taken over; killing `prepare` (even with -9) ends its img2dataset children."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from faults.conftest import BENCH, PREPARE_OPTIONS, features_args, one_error_line, read_folder


def wait_for(predicate, what: str, timeout: float = 120.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc is None or proc.poll() is None, f"the run ended before {what}: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def group_alive(pgid: int) -> bool:
    """Whether any process still belongs to process group ``pgid`` (zombies count as gone)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_second_prepare_is_refused_naming_the_holder_and_the_first_completes(cli, server, cc3m_tsv, cc3m_root, tmp_path):
    data = tmp_path / "data"
    args = ["prepare", "cc3m", "--tsv", str(cc3m_tsv), "--split", "val", *PREPARE_OPTIONS]
    server.slow_delay = 1.0
    try:
        first = cli.start(data, *args)
        holder = data / "datasets" / ".cc3m-val.lock.json"
        wait_for(holder.is_file, "the first run took its lock", proc=first)
        second = cli.run(data, *args, timeout=120)
        first.communicate(timeout=600)
    finally:
        server.slow_delay = 0.0
    line = one_error_line(second)
    assert second.returncode == 3
    assert f"pid {first.pid} on {socket.gethostname()} since 20" in line and "prepare" in line, line
    assert first.returncode == 0
    for sub in ("examples", "images"):
        assert read_folder(data / "datasets" / "cc3m-val" / sub).equals(read_folder(cc3m_root / "datasets" / "cc3m-val" / sub))


def test_stale_lock_of_a_killed_holder_is_taken_over(cli, cc3m_tsv, cc3m_root, tmp_path):
    data = tmp_path / "data"
    folder = data / "datasets" / "cc3m-val"
    code = ("import sys, time; from gill_eval.store.lock import hold_folder; "
            "hold_folder(sys.argv[1], 'prepare cc3m-val'); print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = cli.run(data, "prepare", "cc3m", "--tsv", str(cc3m_tsv), "--split", "val", *PREPARE_OPTIONS)
        assert f"pid {holder.pid}" in one_error_line(refused)
    finally:
        holder.kill()
        holder.wait()
    result = cli.run(data, "prepare", "cc3m", "--tsv", str(cc3m_tsv), "--split", "val", *PREPARE_OPTIONS)
    assert result.returncode == 0, result.stderr
    assert f"taking over the lock of pid {holder.pid}" in " ".join(result.stderr.split())
    assert read_folder(folder / "images").equals(read_folder(cc3m_root / "datasets" / "cc3m-val" / "images"))


def test_kill_9_of_prepare_alone_ends_its_img2dataset_group(cli, server, cc3m_tsv, cc3m_root, tmp_path):
    data = tmp_path / "data"
    args = ["prepare", "cc3m", "--tsv", str(cc3m_tsv), "--split", "val", *PREPARE_OPTIONS]
    server.slow_delay = 1.0
    try:
        parent = cli.start(data, *args)
        wait_for(lambda: children(parent.pid), "img2dataset started", proc=parent)
        [child] = children(parent.pid)
        os.kill(parent.pid, signal.SIGKILL)  # the parent only, as a scheduler's kill -9 of the job's main pid
        parent.wait()
        wait_for(lambda: not group_alive(child), "the img2dataset group ended", timeout=10)
    finally:
        server.slow_delay = 0.0
    result = cli.run(data, *args)
    assert result.returncode == 0, result.stderr
    for sub in ("examples", "images"):
        assert read_folder(data / "datasets" / "cc3m-val" / sub).equals(read_folder(cc3m_root / "datasets" / "cc3m-val" / sub))


def test_two_feature_runs_split_the_units(cli, clip_weights, features_root, copy_root):
    data = copy_root(features_root)
    shutil.rmtree(data / "features")
    runs = [cli.start(data, *features_args(clip_weights)) for _ in range(2)]
    summaries = []
    for run in runs:
        out, err = run.communicate(timeout=600)
        assert run.returncode == 0, err
        summaries.append(json.loads(out))
    assert sum(s["units_run"] for s in summaries) == summaries[0]["units_total"]  # no unit computed twice
    finish = cli.run(data, *features_args(clip_weights))  # completes whatever a busy unit left, writes the manifest
    assert finish.returncode == 0 and json.loads(finish.stdout)["complete"], finish.stderr
    folder = Path("features") / "clip" / "imgs"
    assert read_folder(data / folder).equals(read_folder(features_root / folder))


def test_two_bench_runs_split_generation(cli, bench_root, copy_root):
    data = copy_root(bench_root)
    shutil.rmtree(data / "generations")
    shutil.rmtree(data / "results")
    runs = [cli.start(data, *BENCH) for _ in range(2)]
    generated = 0
    for run in runs:
        _, err = run.communicate(timeout=600)
        assert run.returncode == 0, err
        generated += sum(int(m) for m in re.findall(r"generated (\d+) unit", " ".join(err.split())))
    [gen] = list((bench_root / "generations").glob("vist/*/1c-*"))
    units = len(list((gen / "_done").glob("*.json")))
    assert generated == units  # every unit generated exactly once across the two runs
    [mine] = list((data / "generations").glob("vist/*/1c-*"))
    for marker in (gen / "_done").glob("*.json"):
        shard = marker.stem + ".parquet"
        assert pq.read_table(mine / shard).equals(pq.read_table(gen / shard))
