"""The CLIP retrieval baseline with the tiny random open_clip CLIP, saved and loaded back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gill_eval.models.registry import load_model



@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gill_eval.models.tiny import tiny_clip_dir

    return tiny_clip_dir(root=tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="module")
def model(clip_folder: Path):
    return load_model("tiny-clip-retrieval", {"pretrained": str(clip_folder), "batch_size": "3"})


def images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(40, 30), (32, 32), (50, 70), (16, 16), (64, 48)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes[:n]]


def test_query_embeddings_are_l2_normalised_float32(model) -> None:
    queries = model.embed_queries([["a cat"], ["a dog", "on a sofa"], ["sunset over the sea"], ["x"]])
    assert queries.dtype == np.float32 and queries.shape == (4, 32)
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    assert np.abs(queries[0] - queries[1]).max() > 1e-3  # different texts, different embeddings


def test_image_embeddings_are_l2_normalised_and_independent_of_batch_size(model, clip_folder: Path) -> None:
    candidates = images(5) + [Image.new("L", (20, 20), 128)]  # a grey image is converted to RGB
    embedded = model.embed_images(candidates)
    assert embedded.dtype == np.float32 and embedded.shape == (6, 32)
    np.testing.assert_allclose(np.linalg.norm(embedded, axis=1), 1.0, atol=1e-5)
    one_by_one = load_model("tiny-clip-retrieval", {"pretrained": str(clip_folder), "batch_size": "1"})
    np.testing.assert_allclose(one_by_one.embed_images(candidates), embedded, atol=1e-5)


def test_query_matches_open_clip_on_the_joined_captions(model) -> None:
    """Oracle: open_clip's own encode_text on the captions joined with a space, normalised here."""
    joined = model.embed_queries([["a red bus ", "\nin the rain"]])
    with torch.no_grad():
        raw = model.model.encode_text(model.tokenizer(["a red bus in the rain"])).numpy()[0]
    np.testing.assert_allclose(joined[0], raw / np.linalg.norm(raw), atol=1e-5)


def test_long_query_is_reported_truncated_and_cut_at_77_tokens(model) -> None:
    # 40 one-token words per caption: one caption fits in 77 (with start/end), two joined do not.
    caption = " ".join(["dog"] * 40)
    cut = " ".join(["dog"] * 75)  # what remains of 80 words once start and end tokens take 2 of 77
    out = model.embed_queries([[caption], [caption, caption], [cut]])
    assert model.last_run_stats["truncated"] == [False, True, False]
    assert model.last_run_stats["truncated_contexts"] == 1
    np.testing.assert_allclose(out[1], out[2], atol=1e-6)  # the long query is exactly its first 75 tokens
    assert np.abs(out[0] - out[1]).max() > 1e-4


def test_images_in_a_query_context_are_left_out_and_counted(model) -> None:
    with_image, text_only = model.embed_queries([["a cat", images(1)[0], "on a mat"], ["a cat on a mat"]])
    np.testing.assert_allclose(with_image, text_only, atol=1e-6)
    assert model.last_run_stats["contexts_with_images_left_out"] == 1


def test_no_generation(model) -> None:
    from gill_eval.models.base import CapabilityError

    with pytest.raises(CapabilityError, match="cannot generate images"):
        model.generate([["a cat"]], [0])
