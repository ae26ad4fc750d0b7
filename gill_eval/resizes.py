"""The image resizes the evaluation protocols fix, in one place (docs/protocols.md, "Image inputs").

- ``squash_224``: GILL and FROMAGe resize every input photo to 224x224 ignoring the aspect ratio, with
  Pillow's default filter (bicubic; nearest for palette and bilevel images), in the photo's own mode,
  and convert to RGB afterwards (``gill/utils.py`` ``get_image_from_url``; ``evals/download_vist_images.py``
  saves that as the VIST reference PNG; ``evals/generate_vist_images.py`` squashes each context image
  again, a no-op at 224x224). Their CLIP image processor then sees a 224x224 square, so nothing is cropped.
- ``center_crop_square``: FID's declared resize: RGB, the centred square (offsets floor((w - s) / 2)),
  Pillow LANCZOS to ``size`` (GigaGAN's COCO protocol, 256). Applied to a square of that size it is the
  identity, so a reference stored this way at prepare time is exactly what FID would compute.

- ``plain_rgb``: Pillow's plain RGB conversion with no transparency left behind, what transformers 4.30's
  processors did before anything else. Transparent pixels keep their colour: transformers 5 would paint
  them white when the image (or a P-mode image converted to RGB) still carries a transparency entry.

These are the pixels of GILL's environment under Pillow 10-12 (Pillow 9.5 to 12.3 resize exactly as 9.4;
13 does not, hence the ``pillow<13`` bound): ``tests/test_parity_official_env.py`` checks them against
fixtures computed with Pillow 9.4 (docs/protocols.md, "Environments"). Pure Pillow, no torch: ``prepare``
uses these too.
"""

from __future__ import annotations

from PIL import Image

GILL_INPUT_SIZE = 224


def plain_rgb(image: Image.Image) -> Image.Image:
    """``image.convert("RGB")`` without the ``transparency`` entry a P or RGB image may carry along."""
    rgb = image.convert("RGB")
    rgb.info.pop("transparency", None)
    return rgb


def squash_224(image: Image.Image) -> Image.Image:
    """GILL's input resize: 224x224, aspect ratio not kept, Pillow's default filter, then plain RGB."""
    return plain_rgb(image.resize((GILL_INPUT_SIZE, GILL_INPUT_SIZE)))


def center_crop_square(image: Image.Image, size: int) -> Image.Image:
    """RGB, centre square crop, LANCZOS to ``size`` x ``size`` (identity on an RGB square of that size)."""
    im = image.convert("RGB")
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    im = im.crop((left, top, left + side, top + side))
    return im.resize((size, size), Image.Resampling.LANCZOS)
