"""The shard store: every stage reads and writes folders of Parquet shards through this package."""

from gill_eval.store.atomic import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_file
from gill_eval.store.manifest import Manifest, read_manifest, verify_manifest, write_manifest
from gill_eval.store.names import check_name
from gill_eval.store.root import cache_root, data_root, dataset_dir, remove_in_root
from gill_eval.store.shards import count_rows, iter_batches, iter_rows, list_shards, write_shard
from gill_eval.store.work import ShardSpec, UnitOfWork, WorkPlan, resolve_shard_spec

__all__ = [
    "Manifest",
    "ShardSpec",
    "UnitOfWork",
    "WorkPlan",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "cache_root",
    "check_name",
    "count_rows",
    "data_root",
    "dataset_dir",
    "iter_batches",
    "iter_rows",
    "list_shards",
    "read_manifest",
    "remove_in_root",
    "resolve_shard_spec",
    "sha256_file",
    "verify_manifest",
    "write_manifest",
    "write_shard",
]
