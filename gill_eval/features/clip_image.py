"""CLIP image features: open_clip's image tower on open_clip's eval transform, for every image of a dataset.

The eval transform is split in two at ``ToTensor``: the PIL part (resize, centre crop, RGB) runs in the
DataLoader workers and ships uint8 pixels (4x less to move than float32); ``ToTensor`` and ``Normalize``
run on the device in float32, which is the same arithmetic (``x / 255``, then ``(x - mean) / std``).
The stored embedding is the tower's projected output (``encode_image``, not normalised), as float32.
"""

from __future__ import annotations

import io
from pathlib import Path
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import torch
from PIL import Image
from torchvision import transforms as T

from gill_eval.errors import ConfigError
from gill_eval.features.runner import FeatureStage
from gill_eval.models.weights import fingerprint, load_open_clip

#: Why an image could not be decoded: corrupt or truncated data, unknown format, decompression bomb.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
V = TypeVar("V")


def split_transform(preprocess: T.Compose) -> tuple[T.Compose, tuple[float, ...], tuple[float, ...]]:
    """Split open_clip's eval transform into (PIL part, mean, std); ``ToTensor`` + ``Normalize`` end it."""
    steps = list(preprocess.transforms)
    if len(steps) < 2 or not isinstance(steps[-2], T.ToTensor) or not isinstance(steps[-1], T.Normalize):
        raise ConfigError(f"unsupported open_clip transform (expected ... ToTensor, Normalize): {preprocess}")
    norm = steps[-1]
    return T.Compose(steps[:-2]), tuple(float(m) for m in norm.mean), tuple(float(s) for s in norm.std)


def decode_error(status: str | None, data: bytes | None) -> str | None:
    """Why a row has no usable image before decoding (download failure, missing bytes), or None."""
    if status is not None and status != "success":
        return f"image not downloaded ({status})"
    if data is None:
        return "no image bytes"
    return None


def decode_rows(table: pa.Table, convert: Callable[[Image.Image], V]) -> tuple[list[str | None], list[V]]:
    """Each row's error (None when usable) and ``convert`` of every image that decodes, in row order."""
    errors: list[str | None] = []
    values: list[V] = []
    for status, data in zip(table.column("status").to_pylist(), table.column("image").to_pylist()):
        error = decode_error(status, data)
        if error is None:
            try:
                with Image.open(io.BytesIO(data)) as img:
                    img.load()
                    values.append(convert(img))
            except _DECODE_ERRORS as exc:
                error = f"cannot decode image: {type(exc).__name__}: {exc}"
        errors.append(error)
    return errors, values


class ImagePreparer:
    """Runs in the DataLoader workers: decode, resize and crop each image into uint8 HWC pixels."""

    def __init__(self, pil_transform: T.Compose) -> None:
        self.pil_transform = pil_transform

    def __call__(self, table: pa.Table) -> tuple[list[str | None], torch.Tensor | None]:
        errors, pixels = decode_rows(table, lambda img: np.asarray(self.pil_transform(img).convert("RGB"), dtype=np.uint8))
        return errors, torch.from_numpy(np.stack(pixels)) if pixels else None


def normalise_on_device(pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                        dtype: torch.dtype) -> torch.Tensor:
    """uint8 NHWC -> normalised NCHW in ``dtype``: ToTensor's ``/ 255`` and Normalize, in float32."""
    x = pixels.permute(0, 3, 1, 2).float().div_(255.0)
    return x.sub_(mean).div_(std).to(dtype)


def _clip_fingerprint(pretrained: str | None) -> str | None:
    if pretrained is None:
        return None
    return fingerprint("clip-vit-l-14" if pretrained == "openai" else pretrained)


class ClipImageStage(FeatureStage):
    """``features clip``: one embedding per image, keys and order of the input image shards."""

    kind = "clip"
    input_subdir = "images"
    columns = ["key", "image", "status"]
    fmt = "parquet"

    def __init__(self, model_name: str = "ViT-L-14", pretrained: str | None = "openai",
                 precision: str = "fp32", device: str | torch.device = "cpu") -> None:
        super().__init__(torch.device(device))
        if precision not in ("fp32", "fp16", "bf16"):
            raise ConfigError(f"--precision {precision!r}: use fp32, fp16 or bf16")
        model, preprocess, _ = load_open_clip(model_name, pretrained, device=self.device, precision=precision)
        self.visual = model.visual
        self.dtype = _compute_dtype(self.visual)
        pil, mean, std = split_transform(preprocess)
        self._prepare = ImagePreparer(pil)
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self.dim = int(model.visual.output_dim)
        self.schema = pa.schema([("key", pa.string()), ("status", pa.string()), ("error_message", pa.string()),
                                 ("embedding", pa.list_(pa.float32(), self.dim))])
        folder = pretrained is not None and Path(pretrained).is_dir()  # its own config names the model
        self._config = {"model": f"local-dir:{Path(pretrained).resolve()}" if folder else model_name,
                        "pretrained": pretrained,
                        "weights_sha256": _clip_fingerprint(pretrained),
                        "precision": precision, "transform": repr(preprocess), "dim": self.dim}

    @property
    def prepare(self) -> ImagePreparer:
        return self._prepare

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = normalise_on_device(inputs, self.mean, self.std, self.dtype)
        return self.visual(x).float()

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def embedding_array(self, values: np.ndarray, ok: np.ndarray) -> pa.Array:
        full = np.zeros((len(ok), self.dim), dtype=np.float32)
        full[ok] = values.reshape(-1, self.dim)
        return pa.FixedSizeListArray.from_arrays(pa.array(full.reshape(-1)), self.dim, mask=pa.array(~ok))


def _compute_dtype(module: torch.nn.Module) -> torch.dtype:
    """The dtype the tower computes in: that of its first conv or linear weight.

    open_clip's fp16/bf16 conversion casts only conv, linear and attention weights; embeddings such as
    ``class_embedding`` stay fp32, so the first parameter does not tell the input dtype.
    """
    for sub in module.modules():
        if isinstance(sub, (torch.nn.Conv2d, torch.nn.Linear)):
            return sub.weight.dtype
    return next(module.parameters()).dtype
