"""The quickstart's feature step: both feature sets on the sample datasets with tiny random models.

The tiny models only prove that the pipeline runs end to end offline; their numbers mean nothing and the
summary says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow.parquet as pq
import torch

from gill_eval.features.clip_image import ClipImageStage
from gill_eval.features.runner import run_stage
from gill_eval.features.sd_text import SdTextStage
from gill_eval.models.tiny import tiny_clip_dir, tiny_sd_dir
from gill_eval.store import dataset_dir, list_shards


def run_features_quickstart(dataset_names: Iterable[str], num_workers: int = 0) -> dict[str, Any]:
    """Compute CLIP features (datasets with ``images/``) and SD targets (datasets with ``examples/`` that have
    captions) for each dataset with the tiny models, on the CPU. Returns ``{dataset: {stage: summary}}``
    plus ``"models": "tiny random weights (not real results)"``.
    """
    device = torch.device("cpu")
    clip_stage: ClipImageStage | None = None
    sd_stage: SdTextStage | None = None
    results: dict[str, Any] = {"models": "tiny random weights (not real results)"}
    for name in dataset_names:
        results[name] = {}
        if _has_input(ClipImageStage, name):
            clip_stage = clip_stage or ClipImageStage(pretrained=str(tiny_clip_dir()), device=device)
            results[name]["clip"] = run_stage(clip_stage, name, batch_size=32, num_workers=num_workers)
        if _has_input(SdTextStage, name):
            sd_stage = sd_stage or SdTextStage(str(tiny_sd_dir()), device=device)
            results[name]["sd-text"] = run_stage(sd_stage, name, batch_size=32, num_workers=num_workers)
    return results


def _has_input(stage: type[ClipImageStage] | type[SdTextStage], name: str) -> bool:
    """Whether the dataset has this stage's input shards with its columns (e.g. captions for sd-text)."""
    shards = list_shards(dataset_dir(name) / stage.input_subdir)
    return bool(shards) and all(c in pq.read_schema(shards[0]).names for c in stage.columns)
