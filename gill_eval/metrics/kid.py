"""Kernel Inception Distance (Bińkowski et al. 2018), an extra column beside FID (docs/protocols.md, KID).

KID is the unbiased estimate of the squared MMD between generated and reference Inception features under
the cubic polynomial kernel ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets; unlike FID it has
no bias at small sample sizes (the 3k-15k images of CC3M val), so two models are comparable at any count.
The estimator is torch-fidelity's own ``kid_features_to_metric`` with its defaults (100 subsets of 1,000
images each, its fixed RNG seed), on the same ``inception-v3-compat`` 2048-d features FID uses: a KID
here equals ``torch_fidelity.calculate_metrics(kid=True)`` on the same images. When either side holds
fewer than 1,000 images the subset size drops to the smaller count, and the result says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

from gill_eval.errors import InputError

SUBSETS = 100  # torch-fidelity's default kid_subsets
SUBSET_SIZE = 1000  # torch-fidelity's default kid_subset_size
RNG_SEED = 2020  # torch-fidelity's default rng_seed: the subsets drawn, hence the value, are reproducible


@dataclass(frozen=True)
class Kid:
    """KID of one generated set: the mean over subsets and their std (the estimate's spread)."""

    mean: float
    std: float
    subsets: int
    subset_size: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def subset_size_for(n_generated: int, n_reference: int) -> int:
    """torch-fidelity's subset size, or the smaller set's size when a set holds fewer images."""
    size = min(SUBSET_SIZE, n_generated, n_reference)
    if size < 2:
        raise InputError(f"KID needs at least 2 images on each side; got {n_generated} generated, {n_reference} reference")
    return size


def kid(generated: np.ndarray, reference: np.ndarray, subsets: int = SUBSETS) -> Kid:
    """KID between two (N, D) feature arrays (float32, as the extractor returns them)."""
    gen = np.array(generated, dtype=np.float32)  # copies: torch needs writable memory, a memory map is not
    ref = np.array(reference, dtype=np.float32)
    if gen.ndim != 2 or ref.ndim != 2 or gen.shape[1] != ref.shape[1]:
        raise ValueError(f"feature shapes {gen.shape} and {ref.shape} do not match")
    size = subset_size_for(len(gen), len(ref))
    out = kid_features_to_metric(torch.from_numpy(gen), torch.from_numpy(ref), kid_subsets=subsets,
                                 kid_subset_size=size, rng_seed=RNG_SEED, verbose=False)
    return Kid(float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD]), subsets, size)
