"""The image index GILL retrieves from: ``features gill`` embeddings of a prepared dataset.

Loaded as the official ``load_gill`` loads its CC3M embeddings (docs/protocols.md, "GILL image index"):
each row L2-normalised, then multiplied by ``exp(logit_scale)``, in the heads' dtype; a query's scores are
that matrix times its normalised retrieval embedding. The index must come from the same checkpoint and
visual encoder as the model that queries it (checked against the feature folder's recorded weights).
Both the embeddings and the images are read through the store (``store.features``, ``store.images``), below
this package (docs/architecture.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from gill_eval.errors import InputError
from gill_eval.models.gill.checkpoint import CHECKPOINT_FILE
from gill_eval.store import dataset_dir, read_manifest, verify_manifest
from gill_eval.store.features import CONFIG_NAME, feature_dir, iter_clip_features, require_complete
from gill_eval.store.images import ImageShards

if TYPE_CHECKING:
    from gill_eval.models.gill.adapter import GILLModel

#: The weights an index depends on (``visual_fc`` lives in the checkpoint).
_INDEX_WEIGHTS = (CHECKPOINT_FILE, "visual_encoder")


@dataclass
class ImageIndex:
    """Keys of a dataset's images and their scaled, normalised GILL embeddings (N, D)."""

    dataset: str
    keys: list[str]
    matrix: torch.Tensor
    shards: ImageShards

    @classmethod
    def load(cls, dataset: str, model: GILLModel) -> ImageIndex:
        """The index of ``dataset`` for ``model``; an error naming the command that builds it."""
        folder = feature_dir("gill", dataset)
        build = f"gill-eval features gill --dataset {dataset} --model {model.name}"
        require_complete(folder, build)
        recorded = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8")).get("weights", {})
        mine = model.weight_hashes()
        changed = [name for name in _INDEX_WEIGHTS if recorded.get(name) != mine.get(name)]
        if changed:
            raise InputError(f"{folder}: built with other GILL weights ({', '.join(changed)}); remove it and "
                             f"run `{build}` with this model's options")
        keys: list[str] = []
        rows: list[np.ndarray] = []
        for batch in iter_clip_features(folder):
            keys += [key for key, ok in zip(batch.keys, batch.ok) if ok]
            rows.append(batch.embeddings[batch.ok])
        if not keys:
            raise InputError(f"{folder}: no image embeddings (every image failed); see its shards")
        gill = model.gill
        matrix = torch.as_tensor(np.concatenate(rows), device=gill.device).to(gill.dtype)
        matrix = matrix / matrix.norm(dim=1, keepdim=True) * gill.heads.logit_scale.exp()
        prepared = dataset_dir(dataset)
        verify_manifest(prepared, read_manifest(prepared), f"rerun the `gill-eval prepare` command that made {dataset} to repair it")
        return cls(dataset, keys, matrix, ImageShards(prepared / "images"))

    def scores(self, query: torch.Tensor) -> torch.Tensor:
        """(N,) scores of one normalised query embedding (D,): cosine x exp(logit_scale)."""
        return self.matrix @ query.to(self.matrix.dtype)

    def images(self, keys: list[str]) -> dict[str, Image.Image]:
        """The stored images of ``keys`` (read from the prepared dataset)."""
        return self.shards.images(keys)
