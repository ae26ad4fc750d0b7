"""FID plumbing shared by ``coco-fid`` and ``cc3m-fid``: reference statistics and generated-image features.

Reference statistics (for FID) and features (for KID) are computed once per (reference image-id manifest,
resize mode, extractor, weights) and cached under the cache root (``metrics.fid``); generated-image features
are written to an ``.npy`` beside the generated images (memory-mapped on read), so a rescore never re-runs
Inception.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from gill_eval.console import info, make_progress
from gill_eval.metrics import fid as fidlib
from gill_eval.metrics.inputs import blocks_of, ordered_map
from gill_eval.store import WorkPlan, atomic_path

CHUNK = 32


def manifest_hash(dataset_hash: str, keys: Sequence[str]) -> str:
    """Content hash of a reference image set: the prepared dataset's hash and the sorted image ids."""
    digest = hashlib.sha256(dataset_hash.encode())
    for key in sorted(keys):
        digest.update(b"\0" + key.encode())
    return digest.hexdigest()


def _reference_key(bench: Any, weights_sha: str) -> tuple[list[str], fidlib.ReferenceKey, dict[str, Any]]:
    keys = sorted(bench.reference_keys())
    key = fidlib.ReferenceKey(manifest_hash(bench.dataset.content_hash, keys), fidlib.RESIZE_MODE, fidlib.EXTRACTOR, weights_sha)
    return keys, key, {**key.__dict__, "cache_key": key.digest(), "n": len(keys)}


def _cached_features(path: Path, n: int) -> np.ndarray | None:
    """The cached (n, 2048) features at ``path`` memory-mapped, or None: missing, or broken (a truncated or
    stale file is derived data, so the caller recomputes and overwrites it)."""
    if not path.is_file():
        return None
    try:
        cached = np.load(path, mmap_mode="r")
        if cached.shape == (n, fidlib.FEATURE_DIM):
            return cached
        problem = f"shape {cached.shape}, expected {(n, fidlib.FEATURE_DIM)}"
    except (OSError, ValueError, EOFError) as exc:
        problem = str(exc)
    info(f"[yellow]{path}: broken feature cache ({problem}); recomputing it[/]")
    return None


@contextmanager
def _feature_file(path: Path, n: int) -> Iterator[Callable[[np.ndarray], None]]:
    """A writer of ``n`` Inception feature rows, streamed in order into an ``.npy`` (atomic: kept only when the
    block ends without an error); read it back memory-mapped with ``np.load(path, mmap_mode="r")``."""
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, fidlib.FEATURE_DIM))
        filled = 0

        def write(feats: np.ndarray) -> None:
            nonlocal filled
            out[filled : filled + len(feats)] = feats
            filled += len(feats)

        yield write
        out.flush()
        del out


def _extract_reference(bench: Any, keys: list[str], key: fidlib.ReferenceKey, net: Any,
                       device: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One streaming pass over the reference images: their features (cached ``.npy``, for KID) and their
    statistics (cached ``.npz``, for FID). Worker threads read, decode and resize blocks of ``CHUNK`` images
    ahead of the network (``metrics.inputs``); each block is one Inception batch, as before."""
    running = fidlib.RunningStats()
    bench.dataset.available()  # the key -> shard index is built once, before the worker threads read images

    def block_inputs(block: list[str]) -> list[np.ndarray]:
        images = bench.dataset.images(block)
        return [fidlib.fid_uint8(images[k]) for k in block]

    path = fidlib.reference_features_path(key)
    with _feature_file(path, len(keys)) as write, make_progress() as progress:
        task = progress.add_task("FID/KID reference features", total=len(keys))
        for arrays in ordered_map(block_inputs, blocks_of(keys, CHUNK)):
            feats = fidlib.inception_batch(net, arrays, device)
            write(feats)
            running.update(feats)
            progress.advance(task, len(feats))
    stats = running.statistics()
    fidlib.store_reference(key, stats, running.n)
    return np.load(path, mmap_mode="r"), stats


def reference_statistics(bench: Any, net: Any, weights_sha: str, device: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Cached or freshly computed (streaming) statistics of the benchmark's reference images."""
    keys, key, meta = _reference_key(bench, weights_sha)
    cached = fidlib.cached_reference(key)
    if cached is not None:
        info(f"FID reference statistics: cached ({key.digest()})")
        return cached[0], {**meta, "cached": True}
    _, stats = _extract_reference(bench, keys, key, net, device)
    return stats, {**meta, "cached": False}


def reference_features(bench: Any, net: Any, weights_sha: str, device: str) -> np.ndarray:
    """The reference images' Inception features, (N, 2048) float32 memory-mapped from the cache (computed
    on first use, also when only imported statistics are cached)."""
    keys, key, _ = _reference_key(bench, weights_sha)
    cached = _cached_features(fidlib.reference_features_path(key), len(keys))
    return cached if cached is not None else _extract_reference(bench, keys, key, net, device)[0]


def generated_features_path(plan: WorkPlan, rows: list[dict[str, Any]], weights_sha: str) -> Path:
    """Where the Inception features of a generation folder's successful ``rows`` are cached (``.npy``)."""
    # Keyed by exactly which rows are scored: the generation folder is shared by every seed, so a name
    # from the count alone would hand seed 1 the features of seed 0.
    scored = hashlib.sha256(json.dumps([[r["example_id"], r["seed"], r["status"]] for r in rows]).encode()).hexdigest()
    return plan.out_dir / f"inception-{weights_sha[:12]}-{scored[:16]}.npy"


def cached_generated_features(path: Path, rows: list[dict[str, Any]]) -> np.ndarray | None:
    """The cached features of the successful ``rows`` at ``path``, memory-mapped, or None."""
    return _cached_features(path, sum(r["status"] == "success" for r in rows))


@contextmanager
def generated_features_writer(path: Path, rows: list[dict[str, Any]], net: Any,
                              device: str) -> Iterator[Callable[[list[np.ndarray]], None]]:
    """Takes ``fid_uint8`` arrays of the successful rows in row order, one Inception batch (<= ``CHUNK``) per
    call, and caches their features at ``path`` when the block ends (``np.load(path, mmap_mode="r")``)."""
    with _feature_file(path, sum(r["status"] == "success" for r in rows)) as write:
        yield lambda arrays: write(fidlib.inception_batch(net, arrays, device))
