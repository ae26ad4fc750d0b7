"""Generated float pixels to PIL images, where an image holding NaN or inf is a per-example failure.

Cast to uint8, a NaN pixel becomes 0: an fp16 overflow or a broken checkpoint would give a black image
that is scored like a real one. The models therefore convert their float output here (SD and GILL) or
check it before their own cast (GLIDE): an image with any non-finite value becomes ``None``, and
``require_finite`` raises ``NonFiniteImageError`` carrying the finite images of the call, which the
generation stage records as success rows next to failed rows for the others (docs/reliability.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Optional

from PIL import Image

from gill_eval.errors import GillEvalError

if TYPE_CHECKING:
    import numpy as np

#: The start of every failed row's message (the cause and the fix follow).
NON_FINITE = "non-finite pixels (NaN/inf) in the generated image"


class NonFiniteImageError(GillEvalError):
    """Some images of one ``generate`` call hold NaN/inf pixels: ``images`` has the others, None there;
    ``reason`` is the one-line message of each failed example (what it means and the fix)."""

    def __init__(self, model: str, images: Sequence[Optional[Image.Image]], cause: str) -> None:
        self.images = list(images)
        self.reason = f"{NON_FINITE}: {cause}"
        bad = sum(image is None for image in self.images)
        super().__init__(f"model {model!r}: {bad} of {len(self.images)} images: {self.reason}")


def non_finite_cause(low_precision_fix: str | None, weights: str | None) -> str:
    """Why an image is NaN/inf and what to do: an fp16 overflow (``low_precision_fix`` names the option
    that avoids fp16) or, for a model that does not run in fp16, broken ``weights``."""
    if low_precision_fix:
        return f"numerical overflow in fp16; rerun with --model-opt {low_precision_fix}"
    return f"not fp16, so the weights are broken: check {weights or 'the weights'} or stage them again"


def finite_pil(pixels: np.ndarray) -> list[Optional[Image.Image]]:
    """PIL images of (N, H, W, C) floats in [0, 1] (diffusers' ``output_type="np"``), converted by the
    pipeline's own ``numpy_to_pil`` (so equal to ``output_type="pil"``); None for an image with NaN/inf."""
    import numpy as np
    from diffusers.image_processor import VaeImageProcessor

    return [VaeImageProcessor.numpy_to_pil(image)[0] if np.isfinite(image).all() else None for image in pixels]


def require_finite(model: str, images: Sequence[Optional[Image.Image]], cause: str) -> list[Image.Image]:
    """``images`` when none is None, else ``NonFiniteImageError`` (a per-example failure in ``bench``)."""
    if any(image is None for image in images):
        raise NonFiniteImageError(model, images, cause)
    return list(images)  # type: ignore[arg-type]
