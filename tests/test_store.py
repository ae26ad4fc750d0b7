"""The shard store: atomic writes, streaming reads, manifests and units of work."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from gill_eval.errors import ConfigError, InputError
from gill_eval.store import (
    Manifest,
    ShardSpec,
    UnitOfWork,
    WorkPlan,
    atomic_path,
    atomic_write_json,
    count_rows,
    data_root,
    iter_batches,
    iter_rows,
    list_shards,
    read_manifest,
    resolve_shard_spec,
    sha256_file,
    write_manifest,
    write_shard,
)
from gill_eval.store.root import set_data_root


def test_atomic_write_keeps_old_content_when_writer_fails(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half-writ")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"], "temporary file left behind"


def test_shards_stream_in_order_and_ignore_temporaries(tmp_path):
    for i in range(3):
        write_shard(pa.table({"key": [f"{i}-{j}" for j in range(5)], "x": list(range(5))}), tmp_path / f"{i:05d}.parquet")
    (tmp_path / ".tmp-00003.parquet.abc").write_bytes(b"partial")
    assert [p.name for p in list_shards(tmp_path)] == ["00000.parquet", "00001.parquet", "00002.parquet"]
    batches = list(iter_batches(tmp_path, columns=["key"], batch_size=2))
    assert max(b.num_rows for b in batches) == 2
    assert [r["key"] for r in iter_rows(tmp_path)] == [f"{i}-{j}" for i in range(3) for j in range(5)]
    assert count_rows(tmp_path) == 15


def test_reading_a_missing_column_or_a_corrupt_shard_names_the_file(tmp_path):
    write_shard(pa.table({"key": ["a"]}), tmp_path / "00000.parquet")
    with pytest.raises(InputError, match=r"00000\.parquet: missing column\(s\) caption"):
        list(iter_batches(tmp_path, columns=["key", "caption"]))
    (tmp_path / "00001.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match=r"00001\.parquet: not a readable Parquet shard"):
        list(iter_batches(tmp_path))


def test_manifest_round_trip_and_content_hash(tmp_path):
    src = tmp_path / "raw.tsv"
    src.write_text("a\tb\n")
    m = Manifest(dataset="demo", options={"seed": 0}, counts={"rows": 1})
    m.add_source(src, origin="http://127.0.0.1/raw.tsv")
    write_manifest(tmp_path, m)
    back = read_manifest(tmp_path)
    assert back.sources[0] == {"path": str(src), "sha256": sha256_file(src), "origin": "http://127.0.0.1/raw.tsv"}
    assert back.content_hash() == m.content_hash()
    m2 = Manifest(dataset="demo", options={"seed": 1}, counts={"rows": 1}, sources=m.sources)
    assert m2.content_hash() != m.content_hash()
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(InputError, match="malformed manifest"):
        read_manifest(tmp_path)


def test_sha256_matches_hashlib_oracle(tmp_path):
    import hashlib

    data = bytes(range(256)) * 9000
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f", chunk=1000) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_shard_specs_cover_every_unit_exactly_once(tmp_path, count):
    plan = WorkPlan(tmp_path, [UnitOfWork(f"u{i}", i) for i in range(10)])
    owned = [u.uid for i in range(count) for u in plan.pending(ShardSpec(i, count))]
    assert sorted(owned) == sorted(u.uid for u in plan.units)


def test_done_units_are_skipped_also_with_a_different_worker_count(tmp_path):
    plan = WorkPlan(tmp_path, [UnitOfWork(f"u{i}", i) for i in range(6)])
    for unit in plan.pending(ShardSpec(0, 2)):
        plan.mark_done(unit, {"rows": 3})
    assert [u.uid for u in WorkPlan(tmp_path, plan.units).pending(ShardSpec(0, 3))] == ["u3"]
    assert plan.done_info(plan.units[0]) == {"uid": "u0", "rows": 3}
    assert not plan.all_done()
    for unit in plan.pending():
        plan.mark_done(unit)
    assert plan.all_done() and plan.pending() == []


def test_shard_spec_parsing_and_launcher_ranks(monkeypatch):
    assert ShardSpec.parse("1/4") == ShardSpec(1, 4)
    for bad in ["4/4", "1", "a/b", "-1/2", "0/0"]:
        with pytest.raises(ConfigError, match="--shard"):
            ShardSpec.parse(bad)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert resolve_shard_spec(None) == ShardSpec(1, 2)
    assert resolve_shard_spec("1/3") == ShardSpec(3, 6)


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("GILL_EVAL_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    set_data_root(tmp_path / "flag")
    try:
        assert data_root() == tmp_path / "flag"
    finally:
        set_data_root(None)
    monkeypatch.delenv("GILL_EVAL_DATA")
    import gill_eval

    package = Path(gill_eval.__file__).resolve().parent
    assert package not in data_root().resolve().parents and data_root() != package
