"""FID plumbing shared by ``coco-fid`` and ``cc3m-fid``: reference statistics and generated-image features.

Reference statistics (for FID) and features (for KID) are computed once per (reference image-id manifest,
resize mode, extractor, weights) and cached under the cache root (``metrics.fid``); generated-image features
are written to an ``.npy`` beside the generated images (memory-mapped on read), so a rescore never re-runs
Inception.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

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


def _write_features(path: Path, n: int, blocks: Iterable[list[Image.Image]], net: Any, device: str, title: str,
                    on_block: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
    """Inception features of ``n`` images given in blocks, streamed into an ``.npy`` (atomic) and memory-mapped."""
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, fidlib.FEATURE_DIM))
        filled = 0
        with make_progress() as progress:
            task = progress.add_task(title, total=n)
            for images in blocks:
                feats = fidlib.extract_features(net, images, device, CHUNK)
                out[filled : filled + len(feats)] = feats
                filled += len(feats)
                if on_block is not None:
                    on_block(feats)
                progress.advance(task, len(feats))
        out.flush()
        del out
    return np.load(path, mmap_mode="r")


def _extract_reference(bench: Any, keys: list[str], key: fidlib.ReferenceKey, net: Any,
                       device: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One streaming pass over the reference images: their features (cached ``.npy``, for KID) and their
    statistics (cached ``.npz``, for FID)."""
    running = fidlib.RunningStats()

    def blocks() -> Iterator[list[Image.Image]]:
        for start in range(0, len(keys), CHUNK):
            block = keys[start : start + CHUNK]
            images = bench.dataset.images(block)
            yield [images[k] for k in block]

    features = _write_features(fidlib.reference_features_path(key), len(keys), blocks(), net, device,
                               "FID/KID reference features", running.update)
    stats = running.statistics()
    fidlib.store_reference(key, stats, running.n)
    return features, stats


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


def generated_features(plan: WorkPlan, net: Any, weights_sha: str, device: str) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Generation rows (without image bytes) and the Inception features of the successful ones, in row order."""
    rows = list(read_generations(plan, columns=["example_id", "seed", "status", "error_message"]))
    n_ok = sum(r["status"] == "success" for r in rows)
    # Keyed by exactly which rows are scored: the generation folder is shared by every seed, so a name
    # from the count alone would hand seed 1 the features of seed 0.
    scored = hashlib.sha256(json.dumps([[r["example_id"], r["seed"], r["status"]] for r in rows]).encode()).hexdigest()
    path = plan.out_dir / f"inception-{weights_sha[:12]}-{scored[:16]}.npy"
    cached = _cached_features(path, n_ok)
    if cached is not None:
        return rows, cached

    def blocks() -> Iterator[list[Image.Image]]:
        batch: list[Image.Image] = []
        for row in read_generations(plan, columns=["example_id", "status", "image"]):
            if row["status"] == "success":
                batch.append(decode_image(row["image"], f"{plan.out_dir} {row['example_id']}"))
            if len(batch) == CHUNK:
                yield batch
                batch = []
        if batch:
            yield batch

    return rows, _write_features(path, n_ok, blocks(), net, device, "FID generated features")
