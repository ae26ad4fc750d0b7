"""The CLIP retrieval baseline (GILL Table 5, "CLIP ViT-L"): open_clip ViT-L/14 with OpenAI weights.

The query of a context is its text only, the captions joined with a space (``base.join_captions``), cut
at CLIP's 77 tokens; images in the context are not seen by the text encoder. GILL does not document the
baseline's exact input, so this choice is stated in reports, with ``last_run_stats`` saying how many
queries were truncated and how many contexts had images left out. Candidates are embedded by the image
tower. Both sides are L2-normalised in float32 (cosine scores, as the FROMAGe protocol ranks them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal, Optional

import numpy as np
import torch
from PIL import Image

from gill_eval.errors import ConfigError
from gill_eval.models.base import (
    RETRIEVE,
    Context,
    Model,
    context_has_images,
    join_captions,
    option,
    resolve_device,
    truncation_stats,
    weights_fingerprint,
)


@dataclasses.dataclass
class ClipOptions:
    """Options of ``clip-retrieval``."""

    model_name: str = option("ViT-L-14", "open_clip model name or model-config JSON path")
    pretrained: Optional[str] = option(None, "open_clip tag, weights file or open_clip folder (default: openai)")
    precision: Optional[Literal["fp32", "fp16", "bf16"]] = option(
        None, "weights precision (default: fp16 on GPU, fp32 on CPU)"
    )
    device: Optional[str] = option(None, "torch device (default: cuda if available, else cpu)", runtime=True)
    batch_size: int = option(256, "texts or images per forward pass (results do not depend on it)", runtime=True)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"option batch_size={self.batch_size}: must be at least 1")


@dataclasses.dataclass
class TinyClipOptions(ClipOptions):
    """Options of ``tiny-clip-retrieval``."""

    pretrained: Optional[str] = option(None, "open_clip folder (default: the tiny random CLIP built on first use)")


def token_counts(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Tokens per text including the start and end tokens, before truncation.

    open_clip's ``SimpleTokenizer`` (ViT-L-14) exposes ``encode`` without the two special tokens; its
    ``HFTokenizer`` wraps a transformers tokenizer that adds them.
    """
    if hasattr(tokenizer, "encode"):
        return [len(tokenizer.encode(text)) + 2 for text in texts]
    return [len(ids) for ids in tokenizer.tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]]


def _normalised(features: torch.Tensor) -> np.ndarray:
    features = features.float()
    return torch.nn.functional.normalize(features, dim=-1).cpu().numpy().astype(np.float32)


class ClipRetrievalModel(Model):
    """open_clip CLIP as a retrieval model: text queries against image candidates."""

    name = "clip-retrieval"
    capabilities = frozenset({RETRIEVE})
    Options = ClipOptions
    description = "CLIP ViT-L/14 (open_clip, OpenAI weights) retrieval baseline: captions joined, 77-token cut"

    def __init__(self, options: ClipOptions | None = None) -> None:
        super().__init__(options)
        from gill_eval.models import weights

        self.device = resolve_device(self.options.device)
        if self.options.precision is None:
            self.options.precision = "fp16" if self.device.type == "cuda" else "fp32"
        self.source = self._default_pretrained() if self.options.pretrained is None else self.options.pretrained
        self.model, self.preprocess, self.tokenizer = weights.load_open_clip(
            self.options.model_name, self.source, device=self.device, precision=self.options.precision
        )
        self.context_length = int(getattr(self.tokenizer, "context_length", 77) or 77)
        self._hashes: dict[str, str] | None = None

    def _default_pretrained(self) -> str:
        return "openai"

    def weight_hashes(self) -> dict[str, str]:
        if self._hashes is None:
            registered = "clip-vit-l-14" if self.source == "openai" else None
            self._hashes = {"clip": weights_fingerprint(self.source, registered_as=registered)}
        return self._hashes

    @torch.inference_mode()
    def embed_queries(self, contexts: Sequence[Context]) -> np.ndarray:
        texts = [join_captions(context) for context in contexts]
        counts = token_counts(self.tokenizer, texts)
        parts = []
        for start in range(0, len(texts), self.options.batch_size):
            tokens = self.tokenizer(texts[start : start + self.options.batch_size]).to(self.device)
            parts.append(_normalised(self.model.encode_text(tokens)))
        self.last_run_stats = {
            **truncation_stats([count > self.context_length for count in counts]),
            "contexts_with_images_left_out": sum(context_has_images(context) for context in contexts),
        }
        return np.concatenate(parts) if parts else np.zeros((0, self.embed_dim()), np.float32)

    @torch.inference_mode()
    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        dtype = next(self.model.parameters()).dtype
        parts = []
        size = self.options.batch_size
        for start in range(0, len(images), size):
            batch = torch.stack([self.preprocess(image.convert("RGB")) for image in images[start : start + size]])
            parts.append(_normalised(self.model.encode_image(batch.to(self.device, dtype))))
        return np.concatenate(parts) if parts else np.zeros((0, self.embed_dim()), np.float32)

    def embed_dim(self) -> int:
        """Width of the joint embedding space."""
        return int(self.model.visual.output_dim)


class TinyClipRetrievalModel(ClipRetrievalModel):
    """The tiny random open_clip CLIP (same code path, meaningless scores): for tests and the quickstart."""

    name = "tiny-clip-retrieval"
    Options = TinyClipOptions
    description = "tiny random-weight open_clip CLIP retrieval for tests and the quickstart; not a real model"

    def _default_pretrained(self) -> str:
        from gill_eval.models.tiny import tiny_clip_dir

        return str(tiny_clip_dir())
