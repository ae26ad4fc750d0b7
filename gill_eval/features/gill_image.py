"""GILL retrieval embeddings of a dataset's images: the image index of GILL's interleaved generation.

What the official ``scripts/extract_img_embs.py`` computes for CC3M (docs/protocols.md, "GILL image
index"): each image, opened without a 224 pre-resize, goes through GILL's CLIP preprocessing, the CLIP
vision tower's pooled output and the checkpoint's ``visual_fc``; the stored vector is that 256-d output,
not normalised and without the logit scale (both applied when the index is loaded, as ``load_gill``
does). Unlike the official pickle of URLs, the vectors are Parquet shards keyed by the dataset's image
keys (``<data_root>/features/gill/<NAME>/``, same columns as ``features clip``), so retrieved images are
read back from the prepared dataset.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import torch

from gill_eval.features.clip_image import ClipImageStage, decode_rows
from gill_eval.features.runner import FeatureStage
from gill_eval.resizes import plain_rgb


class GillPixels:
    """Runs in the DataLoader workers: decode each image and apply GILL's CLIP image processor."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, table: pa.Table) -> tuple[list[str | None], torch.Tensor | None]:
        errors, images = decode_rows(table, plain_rgb)  # transparency dropped as transformers 4.30 did
        if not images:
            return errors, None
        return errors, self.processor(images=images, return_tensors="pt").pixel_values


class GillImageStage(FeatureStage):
    """``features gill``: ``visual_fc`` of CLIP's pooled output per image, with a GILL model's weights."""

    kind = "gill"
    input_subdir = "images"
    columns = ["key", "image", "status"]
    fmt = "parquet"

    def __init__(self, model: Any) -> None:
        """``model``: a registry ``gill`` / ``tiny-gill`` model (its vision tower and heads are used)."""
        gill = model.gill
        super().__init__(next(gill.vision.parameters()).device)
        self.gill = gill
        self._prepare = GillPixels(gill.image_processor)
        self.dim = gill.heads.dims.ret_emb_dim
        self.schema = pa.schema([("key", pa.string()), ("status", pa.string()), ("error_message", pa.string()),
                                 ("embedding", pa.list_(pa.float32(), self.dim))])
        self._config = {"model": model.name, "fingerprint": model.fingerprint_hash(),
                        "weights": model.weight_hashes(), "precision": model.options.precision, "dim": self.dim}

    @property
    def prepare(self) -> GillPixels:
        return self._prepare

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        vision = self.gill.vision
        dtype = next(vision.parameters()).dtype
        pooled = vision(pixel_values=inputs.to(dtype)).pooler_output
        # padded on CPU, so a short last batch gives each image the row it gets in a full one
        return self.gill.retrieval_image_vectors(pooled.to(self.gill.dtype)).float()

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    embedding_array = ClipImageStage.embedding_array  # float32 rows of ``self.dim``, null where failed
