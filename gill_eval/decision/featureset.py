"""A decision feature folder: one Parquet table (key, embedding, optional max_cosine) and its manifest.

The fingerprint of the feature source goes into both the Parquet schema metadata (so a copied file is
self-describing) and the manifest. ``max_cosine`` is the paper's heuristic signal: the largest cosine
between a prompt's query embedding and a set of candidate CLIP image features, streamed over the
candidate shards so a CC3M-sized set never has to fit in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gill_eval.console import info
from gill_eval.decision.annotations import Prompts, load_prompts
from gill_eval.decision.features import FeatureSource, fingerprint_hash
from gill_eval.errors import InputError
from gill_eval.store import Manifest, data_root, iter_batches, list_shards, read_manifest, sha256_file, write_manifest
from gill_eval.store import write_shard
from gill_eval.store.shards import shard_name

META_KEY = b"gill_eval.fingerprint"
SPEC_KEY = b"gill_eval.source"


@dataclass
class FeatureSet:
    """Features of every prompt, by key."""

    path: Path
    keys: list[str]
    vectors: np.ndarray
    max_cosine: np.ndarray | None
    fingerprint: dict[str, Any]
    source_spec: str

    @property
    def fingerprint_hash(self) -> str:
        return fingerprint_hash(self.fingerprint)

    def rows(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """(vectors, max_cosine) for ``keys`` in that order; a missing key is an error naming it."""
        index = {k: i for i, k in enumerate(self.keys)}
        missing = [k for k in keys if k not in index]
        if missing:
            raise InputError(f"{self.path}: no features for {len(missing)} key(s), e.g. {missing[0]!r}; "
                             "were they computed on another PartiPrompts table?")
        order = [index[k] for k in keys]
        return self.vectors[order], None if self.max_cosine is None else self.max_cosine[order]

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> FeatureSet:
        """Read a folder written by ``compute`` (or one such Parquet file)."""
        path = Path(path)
        files = list_shards(path) if path.is_dir() else [path]
        if not files or not files[0].is_file():
            raise InputError(f"{path}: no decision feature file (run `gill-eval decision features` first)")
        try:
            table = pq.read_table(files[0])
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{files[0]}: not a readable Parquet file ({exc})") from exc
        meta = (table.schema.metadata or {}).get(META_KEY)
        if meta is None or "key" not in table.column_names or "embedding" not in table.column_names:
            raise InputError(f"{files[0]}: not a decision feature file (needs key, embedding and a fingerprint)")
        vectors = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
        max_cos = table.column("max_cosine").to_numpy() if "max_cosine" in table.column_names else None
        fingerprint = json.loads(meta)
        return cls(files[0], table.column("key").to_pylist(), vectors, max_cos, fingerprint,
                   (table.schema.metadata or {}).get(SPEC_KEY, b"").decode() or fingerprint.get("kind", "?"))


def prompts_sha256(prompts: Prompts) -> str:
    """sha256 of the (key, prompt) pairs in order, exactly as they are encoded."""
    return hashlib.sha256(json.dumps([prompts.keys, prompts.prompts], ensure_ascii=False).encode()).hexdigest()


def default_out(source: FeatureSource, fingerprint: dict[str, Any]) -> Path:
    """``<data_root>/features/decision/<source kind>-<fingerprint hash>``."""
    kind = source.spec.split(":", 1)[0]
    return data_root() / "features" / "decision" / f"{kind}-{fingerprint_hash(fingerprint)}"


def max_cosine(queries: np.ndarray, candidates: Path, batch_size: int = 8192) -> tuple[np.ndarray, int]:
    """Per query, the largest cosine against every candidate vector; returns (scores, candidate count)."""
    q = queries.astype(np.float64)
    q /= np.clip(np.linalg.norm(q, axis=1, keepdims=True), 1e-12, None)
    best = np.full(len(q), -np.inf)
    shards = list_shards(candidates) if candidates.is_dir() else [candidates]
    if not shards or not shards[0].is_file():
        raise InputError(f"{candidates}: no candidate feature shards")
    count = 0
    for batch in iter_batches(shards, columns=["key", "embedding"], batch_size=batch_size):
        emb = np.array(batch.column("embedding").to_pylist(), dtype=np.float64)
        if emb.ndim != 2 or emb.shape[1] != q.shape[1]:
            raise InputError(f"{candidates}: candidate embeddings have shape {emb.shape}, the query embeddings "
                             f"have dimension {q.shape[1]} (use the same CLIP model for both)")
        if not np.isfinite(emb).all():
            bad = batch.column("key")[int(np.flatnonzero(~np.isfinite(emb).all(axis=1))[0])].as_py()
            raise InputError(f"{candidates}: candidate {bad!r} has NaN or infinite values")
        emb /= np.clip(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12, None)
        best = np.maximum(best, (q @ emb.T).max(axis=1))
        count += len(emb)
    if count == 0:
        raise InputError(f"{candidates}: the candidate set is empty")
    return best, count


def compute(
    source: FeatureSource,
    out: Path | None = None,
    dataset: Path | None = None,
    candidates: Path | None = None,
    query_source: FeatureSource | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Encode every prompt with ``source`` (plus ``max_cosine`` when ``candidates`` is given) and write them.

    A rerun whose manifest already records the same fingerprint, prompts (clean-up included) and candidates
    does nothing.
    Returns the folder and its manifest options.
    """
    fingerprint = source.fingerprint()
    out = Path(out) if out is not None else default_out(source, fingerprint)
    prompts = load_prompts(dataset)
    options: dict[str, Any] = {"source": source.spec, "fingerprint": fingerprint,
                               "fingerprint_hash": fingerprint_hash(fingerprint), "prompts": len(prompts.keys),
                               # the prompts as encoded: features of prompts cleaned (or prepared) otherwise are
                               # recomputed, never reused (docs/protocols.md, Table 6)
                               "prompts_sha256": prompts_sha256(prompts)}
    if candidates is not None:
        assert query_source is not None, "candidates need a query source"
        options["retrieval"] = {"candidates": str(candidates), "query_source": query_source.spec,
                                "query_fingerprint": query_source.fingerprint()}
    options["request"] = fingerprint_hash(options)  # what determines the content, before counts are added
    if (out / "manifest.json").is_file() and list_shards(out):
        previous = read_manifest(out).options
        if previous.get("request") == options["request"]:
            info(f"decision features: {out} is up to date")
            return out, previous

    vectors = source.encode(prompts.keys, prompts.prompts)
    if vectors.ndim != 2 or len(vectors) != len(prompts.keys):
        raise InputError(f"{source.spec}: produced shape {vectors.shape} for {len(prompts.keys)} prompts")
    if not np.isfinite(vectors).all():
        bad = prompts.keys[int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])]
        raise InputError(f"{source.spec}: NaN or infinite features for key {bad!r}")
    columns: dict[str, Any] = {
        "key": pa.array(prompts.keys, pa.string()),
        "embedding": pa.array(list(vectors), pa.list_(pa.float32())),
    }
    sources: list[tuple[Path, str]] = []
    if candidates is not None:
        queries = query_source.encode(prompts.keys, prompts.prompts)
        scores, count = max_cosine(queries, Path(candidates))
        columns["max_cosine"] = pa.array(scores, pa.float64())
        options["retrieval"]["candidate_count"] = count
        sources = [(f, "retrieval candidates") for f in
                   (list_shards(candidates) if Path(candidates).is_dir() else [Path(candidates)])]
    table = pa.table(columns).replace_schema_metadata(
        {META_KEY: json.dumps(fingerprint, sort_keys=True), SPEC_KEY: source.spec})
    write_shard(table, out / shard_name(0))
    options["dim"] = int(vectors.shape[1])
    manifest = Manifest(dataset="decision-features", options=options,
                        counts={"prompts": len(prompts.keys), "dim": int(vectors.shape[1])})
    for path, origin in sources:
        manifest.sources.append({"path": str(path), "sha256": sha256_file(path), "origin": origin})
    write_manifest(out, manifest)
    return out, options
