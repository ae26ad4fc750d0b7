"""Stable Diffusion through the real diffusers pipeline, with the tiny random SD saved and loaded back.

Per-example CPU generators make a batch equal single calls: the initial latents are the same draws, so
any difference left is float rounding of batched kernels (measured at ~1e-6 on [0, 1] pixels), i.e. at
most one grey level after quantisation. Different seeds differ by far more.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gill_eval.errors import OfflineError
from gill_eval.models.base import ACCEPTS_IMAGES, CapabilityError, example_seed
from gill_eval.models.registry import load_model

STEPS = "2"



@pytest.fixture(scope="module")
def tiny_sd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gill_eval.models.tiny import tiny_sd_dir

    return tiny_sd_dir(root=tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="module")
def model(tiny_sd_folder: Path):
    return load_model("tiny-sd", {"weights": str(tiny_sd_folder), "steps": STEPS, "batch_size": "4"})


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_loaded_through_diffusers_with_the_options(model, tiny_sd_folder: Path) -> None:
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    assert isinstance(model.pipe, StableDiffusionPipeline)
    assert isinstance(model.pipe.scheduler, PNDMScheduler)
    assert model.pipe.unet.dtype == torch.float32  # fp32 on CPU
    fingerprint = model.fingerprint()
    assert fingerprint["name"] == "tiny-sd"
    assert fingerprint["options"]["steps"] == 2 and fingerprint["options"]["dtype"] == "fp32"
    assert "batch_size" not in fingerprint["options"] and "device" not in fingerprint["options"]
    assert len(fingerprint["weights"]["sd"]) == 64


def test_same_seed_and_example_give_the_identical_image(model) -> None:
    seed = example_seed(0, "story-1")
    first = model.generate([["a red bicycle"]], [seed])[0]
    second = model.generate([["a red bicycle"]], [seed])[0]
    assert first.size == (64, 64) and first.mode == "RGB"
    assert np.array_equal(pixels(first), pixels(second))


def test_a_batch_of_four_equals_four_single_calls(model) -> None:
    contexts = [["a red bicycle"], ["a cat", "on a mat"], ["a lighthouse at night"], ["two dogs"]]
    seeds = [example_seed(3, f"ex-{i}") for i in range(4)]
    batch = model.generate(contexts, seeds)
    singles = [model.generate([c], [s])[0] for c, s in zip(contexts, seeds)]
    for together, alone in zip(batch, singles):
        diff = np.abs(pixels(together) - pixels(alone))
        assert diff.max() <= 1
        assert (diff > 0).mean() < 0.01
    # Order does not matter either: the reversed batch gives the same images, reversed.
    reversed_batch = model.generate(contexts[::-1], seeds[::-1])
    for a, b in zip(batch, reversed_batch[::-1]):
        assert np.abs(pixels(a) - pixels(b)).max() <= 1


def test_different_seeds_give_different_images(model) -> None:
    a, b = model.generate([["a red bicycle"], ["a red bicycle"]], [example_seed(0, "x"), example_seed(1, "x")])
    assert np.abs(pixels(a) - pixels(b)).mean() > 5


def test_multi_caption_context_is_the_captions_joined_with_a_space(model) -> None:
    seed = example_seed(0, "join")
    joined = model.generate([["a cat sitting", " on a mat\n"]], [seed])[0]
    single = model.generate([["a cat sitting on a mat"]], [seed])[0]
    assert np.array_equal(pixels(joined), pixels(single))


def test_truncation_at_77_tokens_is_counted(model) -> None:
    # 40 words are 40 CLIP tokens: one caption fits, two joined (80 + start/end) do not.
    caption = " ".join(["dog"] * 40)
    model.generate([[caption], [caption, caption], ["a cat"]], [1, 2, 3])
    stats = model.last_run_stats
    assert stats["truncated"] == [False, True, False]
    assert stats["truncated_contexts"] == 1 and stats["contexts"] == 3


def test_image_context_raises_the_capability_error(model) -> None:
    with pytest.raises(CapabilityError) as info:
        model.generate([["a caption"], ["a caption", Image.new("RGB", (8, 8))]], [1, 2])
    assert info.value.capability == ACCEPTS_IMAGES and info.value.model == "tiny-sd"


def test_seed_count_must_match(model) -> None:
    from gill_eval.errors import GillEvalError

    with pytest.raises(GillEvalError, match="2 contexts but 1 seeds"):
        model.generate([["a"], ["b"]], [1])


def test_fid_preset_uses_ddim_with_its_settings(tiny_sd_folder: Path) -> None:
    from diffusers import DDIMScheduler

    fid = load_model("tiny-sd", {"weights": str(tiny_sd_folder), "preset": "fid"})
    assert isinstance(fid.pipe.scheduler, DDIMScheduler)
    assert fid.pipeline_kwargs() == {"guidance_scale": 3.0, "num_inference_steps": 250, "height": 64, "width": 64}


def test_batch_size_is_not_part_of_the_fingerprint(model, tiny_sd_folder: Path) -> None:
    other = load_model("tiny-sd", {"weights": str(tiny_sd_folder), "steps": STEPS, "batch_size": "1"})
    assert other.fingerprint_hash() == model.fingerprint_hash()
    changed = load_model("tiny-sd", {"weights": str(tiny_sd_folder), "steps": "3"})
    assert changed.fingerprint_hash() != model.fingerprint_hash()


def test_real_sd_offline_without_staged_weights_fails_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("GILL_EVAL_OFFLINE", "1")
    with pytest.raises(OfflineError) as info:
        load_model("sd", {"device": "cpu"})
    assert "gill-eval models fetch sd15" in str(info.value) and "\n" not in str(info.value)
