"""FID plumbing shared by ``coco-fid`` and ``cc3m-fid``: reference statistics and generated-image features.

Reference statistics (for FID) and features (for KID) are computed once per (reference image-id manifest,
resize mode, extractor, weights) and cached under the cache root (``metrics.fid``); generated-image features
are written to an ``.npy`` beside the generated images (memory-mapped on read), so a rescore never re-runs
Inception.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from gill_eval.bench.data import decode_image
from gill_eval.bench.generation import read_generations
from gill_eval.console import info, make_progress
from gill_eval.metrics import fid as fidlib
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


def _extract_reference(bench: Any, keys: list[str], key: fidlib.ReferenceKey, net: Any,
                       device: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One streaming pass over the reference images: their features (cached ``.npy``, for KID) and their
    statistics (cached ``.npz``, for FID)."""
    running = fidlib.RunningStats()
    path = fidlib.reference_features_path(key)
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(keys), fidlib.FEATURE_DIM))
        with make_progress() as progress:
            task = progress.add_task("FID/KID reference features", total=len(keys))
            for start in range(0, len(keys), CHUNK):
                block = keys[start : start + CHUNK]
                images = bench.dataset.images(block)
                feats = fidlib.extract_features(net, [images[k] for k in block], device, CHUNK)
                out[start : start + len(block)] = feats
                running.update(feats)
                progress.advance(task, len(block))
        out.flush()
        del out
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
    path = fidlib.reference_features_path(key)
    if path.is_file():
        try:
            cached = np.load(path, mmap_mode="r")
            if cached.shape == (len(keys), fidlib.FEATURE_DIM):
                return cached
            problem = f"shape {cached.shape}, expected {(len(keys), fidlib.FEATURE_DIM)}"
        except (OSError, ValueError, EOFError) as exc:  # a truncated cache: derived, so recomputed
            problem = str(exc)
        info(f"[yellow]{path}: broken reference feature cache ({problem}); recomputing it[/]")
    return _extract_reference(bench, keys, key, net, device)[0]


def generated_features(plan: WorkPlan, net: Any, weights_sha: str, device: str) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Generation rows (without image bytes) and the Inception features of the successful ones, in row order."""
    rows = list(read_generations(plan, columns=["example_id", "seed", "status", "error_message"]))
    n_ok = sum(r["status"] == "success" for r in rows)
    # Keyed by exactly which rows are scored: the generation folder is shared by every seed, so a name
    # from the count alone would hand seed 1 the features of seed 0.
    scored = hashlib.sha256(json.dumps([[r["example_id"], r["seed"], r["status"]] for r in rows]).encode()).hexdigest()
    path = plan.out_dir / f"inception-{weights_sha[:12]}-{scored[:16]}.npy"
    if path.is_file():
        try:
            cached = np.load(path, mmap_mode="r")
            if cached.shape == (n_ok, fidlib.FEATURE_DIM):
                return rows, cached
            problem = f"shape {cached.shape}, expected {(n_ok, fidlib.FEATURE_DIM)}"
        except (OSError, ValueError, EOFError) as exc:  # a truncated cache: derived, so recomputed
            problem = str(exc)
        info(f"[yellow]{path}: broken feature cache ({problem}); recomputing it[/]")
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n_ok, fidlib.FEATURE_DIM))
        filled = 0
        batch: list[Any] = []
        with make_progress() as progress:
            task = progress.add_task("FID generated features", total=n_ok)
            for row in read_generations(plan, columns=["example_id", "status", "image"]):
                if row["status"] != "success":
                    continue
                batch.append(decode_image(row["image"], f"{plan.out_dir} {row['example_id']}"))
                if len(batch) == CHUNK:
                    out[filled : filled + CHUNK] = fidlib.extract_features(net, batch, device, CHUNK)
                    filled += CHUNK
                    progress.advance(task, CHUNK)
                    batch = []
            if batch:
                out[filled : filled + len(batch)] = fidlib.extract_features(net, batch, device, CHUNK)
                progress.advance(task, len(batch))
        out.flush()
        del out
    return rows, np.load(path, mmap_mode="r")
