"""GILL's image embeddings (Table 5 candidates, `features gill`) do not depend on their batch (fp32, CPU).

``embed_images`` embeds in chunks of 32, so a set of 33 images ends in a chunk of 1 and a set of 35 in a chunk
of 3: fewer rows than a CPU GEMM computes exactly (docs/protocols.md, "Batched GILL generation"). The oracle
is the image embedded alone; every row of sets of 1, 3, 33 and 35 images must equal it bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch
import pytest
from PIL import Image

from gill_eval.models.registry import load_model

N_IMAGES = 35


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):
    from gill_eval.models.gill.tiny import tiny_gill_dir

    folder = tiny_gill_dir(root=tmp_path_factory.mktemp("tiny-gill-retrieval-rows"))
    return load_model("tiny-gill", {"checkpoint": str(folder), "device": "cpu", "precision": "fp32"})


def _images() -> list[Image.Image]:
    """Distinct noise images of several sizes (each is squashed to 224, then to the tiny CLIP's 32)."""
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (24 + i % 5 * 8, 40 - i % 3 * 8, 3), dtype=np.uint8))
            for i in range(N_IMAGES)]


def test_a_candidate_embeds_the_same_in_sets_of_any_size(model) -> None:
    images = _images()
    alone = np.concatenate([model.embed_images([image]) for image in images])
    sets = {33: model.embed_images(images[:33]), 35: model.embed_images(images),
            3: model.embed_images(images[32:35])}
    for index in (0, 1, 31, 32):  # first chunk, and the last chunk of 33 (1 row) and of 35 (3 rows)
        assert np.array_equal(sets[33][index], alone[index]), f"image {index} in a set of 33"
    for index in range(N_IMAGES):
        assert np.array_equal(sets[35][index], alone[index]), f"image {index} in a set of 35"
    for offset in range(3):
        assert np.array_equal(sets[3][offset], alone[32 + offset]), f"image {32 + offset} in a set of 3"
    # not vacuous: unit-norm rows, and the images' embeddings differ from each other
    np.testing.assert_allclose(np.linalg.norm(alone, axis=1), 1.0, rtol=1e-5)
    assert len({row.tobytes() for row in alone}) == N_IMAGES


def test_features_gill_rows_do_not_depend_on_the_batch(model) -> None:
    """``features gill`` (the image index) has the same short last batches: a row of a batch of 1, 2, 3 or 5
    images equals the image's row computed alone, bit for bit."""
    from gill_eval.features.gill_image import GillImageStage

    stage = GillImageStage(model)
    pixels = model.gill.image_processor(images=_images()[:5], return_tensors="pt").pixel_values
    alone = [stage.forward(pixels[i:i + 1])[0] for i in range(5)]
    assert len({row.numpy().tobytes() for row in alone}) == 5  # not vacuous: the images differ
    for start, stop in ((0, 2), (2, 5), (0, 5), (4, 5)):
        batch = stage.forward(pixels[start:stop])
        for offset, row in enumerate(batch):
            assert torch.equal(row, alone[start + offset]), f"image {start + offset} in a batch of {stop - start}"
