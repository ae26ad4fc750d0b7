"""CLIPScore (Hessel et al. 2021): how well a generated image matches its prompt, an extra column beside FID.

``100 * max(cos(E_image, E_text), 0)`` with CLIP ViT-L/14, the scale and network torchmetrics' ``CLIPScore``
uses (so numbers compare with papers that report it; Hessel et al.'s ``2.5 * max(cos, 0)`` with ViT-B/32 is
the same quantity rescaled). The image side is the CLIP input GILL's scripts use for CLIP similarity
(``clip_similarity.official_clip_preprocess``); the text side is CLIP's own tokenisation, cut to the 77-token
context with the end token kept last, as OpenAI's ``clip.tokenize(truncate=True)`` does. See
docs/protocols.md, CLIPScore.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from gill_eval.metrics.clip_similarity import PRECISIONS, ClipImageEmbedder, cosine_rows, embed_in_chunks

SCALE = 100.0


class ClipTextEmbedder:
    """An open_clip model's text tower with its tokenizer (L2-normalised float32 embeddings)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Callable[[list[str]], torch.Tensor], device: str = "cpu",
                 precision: str = "fp32", batch_size: int = 32) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = device
        self.precision = precision
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(N, D) unit vectors, computed in fixed chunks of ``batch_size`` in the order given."""
        return embed_in_chunks(texts, self.batch_size, self.device, self.precision,
                               lambda chunk: self.model.encode_text(self.tokenizer(list(chunk)).to(self.device)))


def clip_score(images: ClipImageEmbedder, texts: ClipTextEmbedder, generated: Sequence[Image.Image],
               prompts: Sequence[str]) -> np.ndarray:
    """CLIPScore of ``generated[i]`` against ``prompts[i]``, one value per pair (0 to 100)."""
    if len(generated) != len(prompts):
        raise ValueError(f"{len(generated)} images but {len(prompts)} prompts")
    return SCALE * np.maximum(cosine_rows(images.embed(generated), texts.embed(prompts)), 0.0)


def clip_score_prepared(images: ClipImageEmbedder, texts: ClipTextEmbedder, inputs: Sequence[torch.Tensor],
                        prompts: Sequence[str]) -> np.ndarray:
    """``clip_score`` of images already turned into network inputs by ``images.prepare``."""
    if len(inputs) != len(prompts):
        raise ValueError(f"{len(inputs)} images but {len(prompts)} prompts")
    return SCALE * np.maximum(cosine_rows(images.embed_prepared(inputs), texts.embed(prompts)), 0.0)
