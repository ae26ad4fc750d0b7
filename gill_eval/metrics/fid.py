"""FID with torch-fidelity's ``inception-v3-compat`` extractor, streaming statistics and a content-keyed cache.

Why not ``torch_fidelity.calculate_metrics`` directly: it holds every feature in memory and caches
statistics under a name that ignores weights, resize and content (docs/protocols.md, FID). Here features
are folded into float64 running sums as they are produced (constant memory for 30k images), the Fréchet distance is
torch-fidelity's own ``fid_statistics_to_metric``, and reference statistics are cached under a key made of
the image manifest hash, the resize mode, the extractor name and its weights hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import torch
import torch_fidelity
from PIL import Image
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.metric_fid import fid_statistics_to_metric

from gill_eval.console import info
from gill_eval.errors import InputError
from gill_eval.metrics.inputs import blocks_of, ordered_map
from gill_eval.models.weights import resolve
from gill_eval.resizes import center_crop_square
from gill_eval.store import atomic_path, cache_root, sha256_file

EXTRACTOR = "inception-v3-compat"
FEATURE_DIM = 2048
FID_SIZE = 256
# The resizer (gill_eval.resizes.center_crop_square) and the Pillow that ran it: Pillow 13 resamples
# differently (docs/protocols.md, "Environments"), so cached reference statistics are keyed by its version.
RESIZE_MODE = (f"gill_eval.resizes.center_crop_square: PIL {PIL.__version__} LANCZOS to {FID_SIZE}x{FID_SIZE}, uint8 "
               "(then torch-fidelity TF1 bilinear to 299)")
TORCH_FIDELITY_FILE = "weights-inception-2015-12-05-6726825d.pth"


class _InitialInception(FeatureExtractorInceptionV3):
    """The extractor's architecture with its initial weights.

    torch-fidelity's constructor always loads a state dict (strictly), from a path or its URL; given a path
    to an empty one, this subclass loads it non-strictly, so nothing is loaded and nothing is downloaded.
    It adds no module, so its ``state_dict()`` is exactly the extractor's.
    """

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        return super().load_state_dict(state_dict, strict=False, assign=assign)


def build_random_inception_weights(path: str | os.PathLike[str], seed: int = 0) -> Path:
    """Write a random-weight Inception state dict whose features are usable (tests, quickstart, benchmarks).

    Default init gives features near 1e-8 (FID ~1e-12); Kaiming-normal convs and normal(2048**-0.5)
    linear layers give features with std near 0.5, so different image sets give FIDs of order 10.
    """
    torch.manual_seed(seed)
    target = Path(path)
    with atomic_path(target) as tmp:
        torch.save({}, tmp)  # the empty state dict the constructor loads (see _InitialInception)
        net = _InitialInception(EXTRACTOR, ["2048"], feature_extractor_weights_path=str(tmp))
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight)
                if module.bias is not None:
                    torch.nn.init.zeros_(module.bias)
            elif isinstance(module, torch.nn.Linear):
                torch.nn.init.normal_(module.weight, std=FEATURE_DIM**-0.5)
                torch.nn.init.zeros_(module.bias)
        torch.save(net.state_dict(), tmp)
    return target


def load_inception(weights: str | os.PathLike[str] | None = None, device: str = "cpu") -> tuple[FeatureExtractorInceptionV3, str]:
    """The extractor with local weights and the weights' sha256.

    ``weights=None`` uses the staged ``fid-inception`` weight (`gill-eval models fetch fid-inception`).
    The file is first read with ``weights_only=True``: torch-fidelity itself unpickles with
    ``weights_only=False``, so a file that is not a plain state dict is rejected before it gets there.
    """
    path = Path(weights) if weights is not None else resolve("fid-inception") / TORCH_FIDELITY_FILE
    if not path.is_file():
        raise InputError(f"{path}: Inception weights file not found")
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input problem
        raise InputError(f"{path}: not a plain Inception state dict ({exc})") from exc
    net = FeatureExtractorInceptionV3(EXTRACTOR, ["2048"], feature_extractor_weights_path=str(path))
    return net.to(device), sha256_file(path)


def fid_uint8(image: Image.Image) -> np.ndarray:
    """Centre-crop to a square and resize to 256 (LANCZOS): HWC uint8, so images of any size stack."""
    return np.asarray(center_crop_square(image, FID_SIZE), dtype=np.uint8)


@torch.no_grad()
def inception_batch(net: FeatureExtractorInceptionV3, arrays: Sequence[np.ndarray], device: str = "cpu") -> np.ndarray:
    """Features of one batch of ``fid_uint8`` arrays: float32, (len(arrays), 2048)."""
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous().to(device)
    (feats,) = net(x)
    return feats.float().cpu().numpy()


def extract_features(
    net: FeatureExtractorInceptionV3, images: Sequence[Image.Image], device: str = "cpu", batch_size: int = 32,
    workers: int | None = None,
) -> np.ndarray:
    """2048-d pool features, float32, (N, 2048), in fixed chunks of ``batch_size``; the crops and resizes run
    in ``workers`` threads ahead of the network (``metrics.inputs``)."""
    out = [inception_batch(net, block, device)
           for block in blocks_of(ordered_map(fid_uint8, images, workers), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM), dtype=np.float32)


class RunningStats:
    """Mean and covariance from float64 running sums of features shifted by the first batch's mean.

    Shifting first avoids the cancellation of E[xx^T] - mu mu^T (450% wrong in fp32 on features offset by
    100; docs/protocols.md, FID); float64 sums make the result independent of chunking to ~1e-12.
    """

    def __init__(self, dim: int = FEATURE_DIM) -> None:
        self.dim = dim
        self.n = 0
        self.shift: np.ndarray | None = None
        self.sum = np.zeros(dim, dtype=np.float64)
        self.outer = np.zeros((dim, dim), dtype=np.float64)

    def update(self, features: np.ndarray) -> None:
        """Fold a (B, dim) block of features into the sums."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"features of shape {x.shape}; expected (B, {self.dim})")
        if len(x) == 0:
            return
        if self.shift is None:
            self.shift = x.mean(axis=0)
        c = x - self.shift
        self.n += len(x)
        self.sum += c.sum(axis=0)
        self.outer += c.T @ c

    def statistics(self) -> dict[str, np.ndarray]:
        """``{"mu", "sigma"}`` in float64 (unbiased covariance, like ``np.cov``)."""
        if self.n < 2 or self.shift is None:
            raise InputError(f"FID needs at least 2 images; got {self.n}")
        mean_c = self.sum / self.n
        sigma = (self.outer - self.n * np.outer(mean_c, mean_c)) / (self.n - 1)
        return {"mu": self.shift + mean_c, "sigma": sigma}


def frechet_distance(stats_1: dict[str, np.ndarray], stats_2: dict[str, np.ndarray]) -> float:
    """Fréchet distance via torch-fidelity (both sides cast to float64 so its dtype assertion holds)."""
    s1 = {k: np.asarray(stats_1[k], dtype=np.float64) for k in ("mu", "sigma")}
    s2 = {k: np.asarray(stats_2[k], dtype=np.float64) for k in ("mu", "sigma")}
    return float(fid_statistics_to_metric(s1, s2, verbose=False)[torch_fidelity.KEY_METRIC_FID])


def statistics_by_group(
    features: np.ndarray, labels: Sequence[Hashable | None], chunk: int = 1024
) -> dict[Hashable, dict[str, np.ndarray]]:
    """``{"mu", "sigma"}`` of each group of rows (``labels[i]`` names row i's group; None leaves it out).

    Streamed in chunks of ``chunk`` rows (``features`` may be a memory map), one ``RunningStats`` per group.
    """
    if len(labels) != len(features):
        raise ValueError(f"{len(labels)} labels for {len(features)} feature rows")
    codes = {label: i for i, label in enumerate(dict.fromkeys(x for x in labels if x is not None))}
    index = np.array([codes[x] if x is not None else -1 for x in labels], dtype=np.int64)
    running = [RunningStats(features.shape[1]) for _ in codes]
    for start in range(0, len(features), chunk):
        block = np.asarray(features[start : start + chunk])
        for i, stats in enumerate(running):
            stats.update(block[index[start : start + chunk] == i])
    return {label: running[i].statistics() for label, i in codes.items()}


# ---------------------------------------------------------------- reference statistics cache


@dataclass(frozen=True)
class ReferenceKey:
    """What determines reference statistics: image content, resize, extractor and its weights."""

    manifest_hash: str
    resize_mode: str
    extractor: str
    weights_sha256: str

    def digest(self) -> str:
        blob = json.dumps(self.__dict__, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:32]


def reference_cache_dir() -> Path:
    """Cached reference statistics live under the cache root, never inside the package."""
    return cache_root() / "fid-reference"


def _npz_path(key: ReferenceKey) -> Path:
    return reference_cache_dir() / f"{key.digest()}.npz"


def reference_features_path(key: ReferenceKey) -> Path:
    """Where the reference set's features themselves are cached (``.npy``, float32, (N, 2048)): KID needs the
    features, not only their mean and covariance (metrics/kid.py)."""
    return reference_cache_dir() / f"{key.digest()}-features.npy"


def save_statistics(path: str | os.PathLike[str], stats: dict[str, np.ndarray], key: ReferenceKey, n: int) -> Path:
    """Write statistics with their key and count as an ``.npz`` (atomic)."""
    target = Path(path)
    meta = json.dumps({**key.__dict__, "n": n, "torch_fidelity": torch_fidelity.__version__}, sort_keys=True)
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, mu=stats["mu"], sigma=stats["sigma"], meta=np.array(meta))
    return target


def load_statistics(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read an ``.npz`` written by ``save_statistics``: (stats, metadata)."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as data:
            stats = {"mu": data["mu"].astype(np.float64), "sigma": data["sigma"].astype(np.float64)}
            meta = json.loads(str(data["meta"]))
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # also a truncated file
        raise InputError(f"{p}: not a gill-eval FID statistics file ({exc})") from exc
    if stats["mu"].ndim != 1 or stats["sigma"].shape != (len(stats["mu"]), len(stats["mu"])):
        raise InputError(f"{p}: mu/sigma shapes {stats['mu'].shape}/{stats['sigma'].shape} do not match")
    return stats, meta


def cached_reference(key: ReferenceKey) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The cached statistics for ``key``, or None (also when the cached file is broken: it is derived, so
    the caller recomputes and overwrites it; docs/reliability.md)."""
    path = _npz_path(key)
    if not path.is_file():
        return None
    try:
        return load_statistics(path)
    except InputError as exc:
        info(f"[yellow]{exc}; recomputing the cached statistics[/]")
        return None


def store_reference(key: ReferenceKey, stats: dict[str, np.ndarray], n: int) -> Path:
    """Put statistics in the cache under their content key."""
    return save_statistics(_npz_path(key), stats, key, n)


def import_reference(path: str | os.PathLike[str]) -> Path:
    """Copy an exported ``.npz`` into the cache under the key recorded inside it."""
    stats, meta = load_statistics(path)
    try:
        key = ReferenceKey(meta["manifest_hash"], meta["resize_mode"], meta["extractor"], meta["weights_sha256"])
    except KeyError as exc:
        raise InputError(f"{path}: metadata lacks {exc}") from None
    return store_reference(key, stats, int(meta.get("n", 0)))


def export_reference(key: ReferenceKey, out: str | os.PathLike[str]) -> Path:
    """Write the cached statistics of ``key`` to ``out`` (portable, no pickle)."""
    found = cached_reference(key)
    if found is None:
        raise InputError(f"no cached reference statistics for {key.digest()}; compute them first (bench coco-fid)")
    stats, meta = found
    return save_statistics(out, stats, key, int(meta.get("n", 0)))
