"""The store's generic mechanisms on their own: output records, verify-on-skip, manifest checks, unit claims."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gill_eval.errors import InputError
from gill_eval.store import Manifest, UnitOfWork, WorkPlan, read_manifest, verify_manifest, write_manifest, write_shard


def _plan(tmp_path, n=3):
    plan = WorkPlan(tmp_path / "out", [UnitOfWork(f"{i:05d}", i) for i in range(n)])
    for unit in plan.pending():
        table = pa.table({"key": [f"{unit.index}-{j}" for j in range(50)], "v": list(range(50))})
        plan.mark_done(unit, {"rows": 50}, [write_shard(table, plan.out_dir / f"{unit.uid}.parquet")])
    return plan


def test_marker_records_size_rows_and_hash(tmp_path):
    plan = _plan(tmp_path)
    [record] = plan.done_info(plan.units[1])["outputs"]
    path = plan.out_dir / "00001.parquet"
    assert record["path"] == "00001.parquet" and record["bytes"] == path.stat().st_size and record["rows"] == 50
    assert len(record["head_tail_sha256"]) == 64


@pytest.mark.parametrize(("damage", "why"), [
    ("truncate", "bytes"), ("delete", "missing"), ("one-row-less", "when it was written"),
    ("same-size-edit", "content hash differs"), ("empty-marker", "unreadable"), ("foreign-marker", "not this unit's"),
])
def test_a_broken_done_unit_is_pending_again(damage, why, tmp_path, capsys):
    plan = _plan(tmp_path)
    path = plan.out_dir / "00001.parquet"
    marker = plan.marker(plan.units[1])
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-10])
    elif damage == "delete":
        path.unlink()
    elif damage == "one-row-less":
        pq.write_table(pq.read_table(path).slice(1), path)
    elif damage == "same-size-edit":  # a byte of the data pages, size and footer unchanged
        data = bytearray(path.read_bytes())
        data[100] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "empty-marker":
        marker.write_text("")
    else:
        marker.write_text('{"uid": "00002"}')
    assert [u.uid for u in plan.pending()] == ["00001"]
    err = " ".join(capsys.readouterr().err.split())
    assert "redoing unit 00001" in err and why in err, err
    assert not marker.exists()


def test_manifest_lists_its_shards_and_a_reader_checks_them(tmp_path):
    folder = tmp_path / "ds"
    write_shard(pa.table({"key": ["a", "b"]}), folder / "examples" / "00000.parquet")
    write_shard(pa.table({"key": ["a", "b"]}), folder / "download" / "raw" / "00000.parquet")  # working copy: not listed
    write_manifest(folder, Manifest(dataset="ds"))
    manifest = read_manifest(folder)
    assert [f["path"] for f in manifest.files] == ["examples/00000.parquet"]
    verify_manifest(folder, manifest, "rerun X")
    write_shard(pa.table({"key": ["c"]}), folder / "examples" / "00001.parquet")
    with pytest.raises(InputError, match=r"00001.parquet: not listed in .*manifest.json; rerun X"):
        verify_manifest(folder, manifest, "rerun X")
    (folder / "examples" / "00001.parquet").unlink()
    pq.write_table(pa.table({"key": ["a"]}), folder / "examples" / "00000.parquet")
    with pytest.raises(InputError, match=r"00000.parquet has .* when it was written.*changed after its manifest"):
        verify_manifest(folder, manifest, "rerun X")


def test_units_claimed_by_another_process_are_left_to_it(tmp_path):
    plan = WorkPlan(tmp_path / "out", [UnitOfWork(f"u{i}", i) for i in range(3)])
    code = ("import sys, time; from gill_eval.store import UnitOfWork, WorkPlan; "
            "p = WorkPlan(sys.argv[1], [UnitOfWork('u1', 1)]); assert p.claim(p.units[0]); "
            "print('claimed', flush=True); time.sleep(60)")
    other = subprocess.Popen([sys.executable, "-c", code, str(plan.out_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "claimed"
        assert [plan.claim(u) for u in plan.units] == [True, False, True]
    finally:
        other.kill()
        other.wait()
    assert plan.claim(plan.units[1])  # the holder died: its claim is free at once
    plan.mark_done(plan.units[0])
    plan.release(plan.units[0])
    assert not plan.claim(plan.units[0])  # finished meanwhile: nothing left to claim


def test_claiming_a_unit_removes_the_half_written_files_a_killed_run_left(tmp_path):
    plan = WorkPlan(tmp_path / "out", [UnitOfWork(f"{i:05d}", i) for i in range(2)])
    done_dir = plan.marker(plan.units[0]).parent
    done_dir.mkdir(parents=True)
    stale = [done_dir / ".tmp-00001.json.u1471hq6", tmp_path / "out" / ".tmp-00001.parquet.x9"]
    other = done_dir / ".tmp-00000.json.abc"  # another unit's: not ours to touch
    for path in (*stale, other):
        path.write_text("half")
    assert plan.claim(plan.units[1])
    assert not any(p.exists() for p in stale) and other.exists()
    plan.release(plan.units[1])
