"""CLIP image-image similarity (GILL Tables 1-2): cosine of the two images' CLIP ViT-L/14 embeddings.

The network comes from open_clip; its input is what GILL's scripts feed it (``evals/compute_clip_similarity_*.py``:
Hugging Face ``CLIPProcessor``), built by ``official_clip_preprocess``. open_clip's own eval transform differs
from it in one place: torchvision's centre crop rounds the offset where the processor floors it, one pixel
apart whenever the resized long side minus 224 is 3 mod 4 (a 640x427 VisDial photo). Embeddings are computed
in fixed-size chunks (``batch_size``) in the order given, and normalised in fp32, so a score never depends
on how the caller grouped the images into calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

from gill_eval.metrics.inputs import ordered_map
from gill_eval.resizes import plain_rgb

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
T = TypeVar("T")


class ClipImageEmbedder:
    """An open_clip model's image tower with its preprocessing transform."""

    def __init__(
        self,
        model: torch.nn.Module,
        preprocess: Callable[[Image.Image], torch.Tensor],
        device: str = "cpu",
        precision: str = "fp32",
        batch_size: int = 32,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        self.model = model.to(device).eval()
        self.preprocess = preprocess
        self.device = device
        self.precision = precision
        self.batch_size = batch_size

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """One image as the network's input (CHW float32); thread-safe, so workers can run it ahead."""
        return self.preprocess(image.convert("RGB"))

    def embed(self, images: Sequence[Image.Image], workers: int | None = None) -> np.ndarray:
        """L2-normalised float32 embeddings, shape (N, D); inputs prepared in ``workers`` threads (``metrics.inputs``)."""
        return self.embed_prepared(list(ordered_map(self.prepare, images, workers)))

    def embed_prepared(self, inputs: Sequence[torch.Tensor]) -> np.ndarray:
        """Embeddings of inputs made by ``prepare``, in fixed chunks of ``batch_size``."""
        return embed_in_chunks(inputs, self.batch_size, self.device, self.precision,
                               lambda chunk: self.model.encode_image(torch.stack(list(chunk)).to(self.device)))


@torch.no_grad()
def embed_in_chunks(items: Sequence[T], batch_size: int, device: str, precision: str,
                    encode: Callable[[Sequence[T]], torch.Tensor]) -> np.ndarray:
    """``encode`` over fixed chunks of ``batch_size`` in the order given, L2-normalised in fp32: (N, D) float32.

    Autocast (not half weights) keeps the fp32 model usable for every precision; the vectors are normalised
    in fp32 either way (docs/protocols.md: >= 0.9999 agreement on random weights)."""
    chunks = []
    for start in range(0, len(items), batch_size):
        with torch.autocast(device_type=torch.device(device).type, dtype=PRECISIONS[precision],
                            enabled=precision != "fp32"):
            feats = encode(items[start : start + batch_size])
        chunks.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy())
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def official_clip_preprocess(model: torch.nn.Module) -> Callable[[Image.Image], torch.Tensor]:
    """The CLIP processor of GILL's CLIP-similarity scripts, at ``model``'s input size and normalisation.

    RGB; bicubic resize of the short side to the input size (long side truncated); centre crop with
    floored offsets; x / 255 in float64 then float32; (x - mean) / std (docs/protocols.md).
    """
    from transformers import CLIPImageProcessorPil

    cfg = model.visual.preprocess_cfg
    side = int(cfg["size"][0] if isinstance(cfg["size"], (tuple, list)) else cfg["size"])
    processor = CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                                      image_mean=list(cfg["mean"]), image_std=list(cfg["std"]))

    def preprocess(image: Image.Image) -> torch.Tensor:
        # Pillow's plain RGB conversion first, as transformers 4.30's processor did: transformers 5 paints
        # transparent pixels white instead (docs/protocols.md, "Environments")
        return processor(images=[plain_rgb(image)], return_tensors="pt").pixel_values[0]

    return preprocess


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two arrays of unit vectors (float64 sums for a stable last digit)."""
    return np.einsum("ij,ij->i", a.astype(np.float64), b.astype(np.float64))


def clip_similarity(
    embedder: ClipImageEmbedder, generated: Sequence[Image.Image], reference: Sequence[Image.Image]
) -> np.ndarray:
    """Per-pair CLIP similarity between ``generated[i]`` and ``reference[i]``."""
    if len(generated) != len(reference):
        raise ValueError(f"{len(generated)} generated images but {len(reference)} references")
    return cosine_rows(embedder.embed(generated), embedder.embed(reference))
