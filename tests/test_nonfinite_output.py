"""Generated images with NaN/inf pixels are failed examples with a reason, never black images scored as real.

The NaN comes from the weights, as it does from a broken checkpoint: a saved copy of a tiny model whose
embedding row of one token (or VAE output layer) is NaN, loaded back through the models' real loaders.
A prompt with that token gives a NaN image, the others of the same batch are untouched.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from safetensors.torch import load_file, save_file

from gill_eval.bench.data import encode_png
from gill_eval.bench.runner import RunOptions, run_benchmark
from gill_eval.bench.scorers import Scorers, ScorerSpec
from gill_eval.bench.vist import VistBenchmark
from gill_eval.models.base import cpu_generator, example_seed
from gill_eval.models.pixels import NonFiniteImageError, finite_pil
from gill_eval.models.registry import load_model
from test_bench_data import build_fixture_data

FAST_SD = {"steps": "2", "batch_size": "8"}
TEXT_ENCODER = Path("text_encoder") / "model.safetensors"
VAE = Path("vae") / "diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the tiny models, so that tiny GILL reuses the tiny SD built for the SD tests."""
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="module")
def tiny_sd_folder(tiny_root: Path) -> Path:
    from gill_eval.models.tiny import tiny_sd_dir

    return tiny_sd_dir(root=tiny_root)


@pytest.fixture(scope="module")
def tiny_sd(tiny_sd_folder: Path):  # noqa: ANN201 - the intact tiny-sd model
    return load_model("tiny-sd", {**FAST_SD, "weights": str(tiny_sd_folder)})


def _broken_copy(folder: Path, dest: Path, file: Path, key: str, row: int | None = None) -> Path:
    """A copy of the diffusers folder whose tensor ``key`` in ``file`` is NaN (only row ``row`` if given)."""
    shutil.copytree(folder, dest)
    tensors = load_file(dest / file)
    assert key in tensors, sorted(tensors)
    if row is None:
        tensors[key].fill_(float("nan"))
    else:
        tensors[key][row] = float("nan")
    save_file(tensors, dest / file, metadata={"format": "pt"})
    return dest


def _token_id(folder: Path, word: str) -> int:
    from transformers import CLIPTokenizer

    ids = CLIPTokenizer.from_pretrained(folder / "tokenizer")(word, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1
    return ids[0]


def test_finite_pil_converts_like_diffusers_and_drops_only_non_finite_images() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.random((4, 8, 8, 3)).astype(np.float32)
    pixels[1, 3, 5, 2] = np.nan
    pixels[3, 0, 0, 0] = np.inf
    pixels[0, 0, 0] = [0.0, 1.0, 0.25]  # the extremes, and 63.75 rounding up
    got = finite_pil(pixels)
    assert got[1] is None and got[3] is None
    for index in (0, 2):  # the definition of diffusers' numpy_to_pil: round(x * 255) as uint8
        want = np.rint(pixels[index] * np.float32(255)).astype(np.uint8)  # float32, as the pipeline's arrays
        assert got[index].mode == "RGB" and np.array_equal(np.asarray(got[index]), want)
    assert tuple(np.asarray(got[0])[0, 0]) == (0, 255, 64)


def test_sd_pixels_are_byte_identical_to_the_pipelines_pil_output(tiny_sd) -> None:  # noqa: ANN001
    model = tiny_sd
    prompts, seeds = ["a red bicycle", "two dogs on a beach"], [example_seed(0, "a"), example_seed(0, "b")]
    ours = model.generate([[p] for p in prompts], seeds)
    theirs = model.pipe(prompt=prompts, generator=[cpu_generator(s) for s in seeds], output_type="pil",
                        **model.pipeline_kwargs()).images
    for mine, pil in zip(ours, theirs, strict=True):
        assert (mine.mode, mine.size) == (pil.mode, pil.size)
        assert mine.tobytes() == pil.tobytes() and encode_png(mine) == encode_png(pil)
        assert np.asarray(mine).std() > 0


def test_sd_nan_in_one_examples_prompt_fails_that_example_only(tiny_sd_folder: Path, tiny_sd,  # noqa: ANN001
                                                               tmp_path: Path) -> None:
    broken = _broken_copy(tiny_sd_folder, tmp_path / "sd-broken-token", TEXT_ENCODER,
                          "embeddings.token_embedding.weight", _token_id(tiny_sd_folder, "zebra"))
    model = load_model("tiny-sd", {**FAST_SD, "weights": str(broken)})
    contexts = [["a red bicycle"], ["a zebra"], ["two dogs"]]
    with pytest.raises(NonFiniteImageError) as caught:
        model.generate(contexts, [1, 2, 3])
    images = caught.value.images
    assert images[1] is None and images[0] is not None and images[2] is not None
    assert "not fp16, so the weights are broken: check " + str(broken) in caught.value.reason
    # the finite images are those of the intact weights: the broken row touched nothing else
    intact = tiny_sd.generate(contexts, [1, 2, 3])
    for index in (0, 2):
        assert images[index].tobytes() == intact[index].tobytes()


def test_bench_records_nan_images_as_failed_rows_and_stores_no_black_png(tiny_sd_folder: Path,
                                                                          tmp_path: Path) -> None:
    build_fixture_data()  # VIST: the 1c context of story s is "story s sentence 4 about the [female] ..."
    broken = _broken_copy(tiny_sd_folder, tmp_path / "sd-broken-3", TEXT_ENCODER,
                          "embeddings.token_embedding.weight", _token_id(tiny_sd_folder, "3"))
    model = load_model("tiny-sd", {**FAST_SD, "weights": str(broken)})
    decodes: list[int] = []
    model.pipe.vae.decoder.register_forward_pre_hook(lambda module, args: decodes.append(args[0].shape[0]))
    bench = VistBenchmark()
    result = run_benchmark(bench, model, "1c", RunOptions((0,), None, 8), Scorers(ScorerSpec(preset="tiny")))
    assert decodes == [6]  # one batch of the 6 stories: the NaN one failed alone, nothing was retried
    assert result["n_expected"] == 6 and result["failures"]["count"] == 1
    assert result["metrics"]["clip_similarity"]["n_evaluated"] == 5
    assert result["failures"]["first_error"].startswith(
        "NonFiniteImageError: non-finite pixels (NaN/inf) in the generated image: not fp16, so the weights are broken")
    rows = pd.concat([pd.read_parquet(path) for path in sorted(Path(result["generation"]["dir"]).glob("*.parquet"))])
    failed = rows[rows["status"] != "success"]
    assert list(failed["example_id"]) == ["5003"] and failed["image"].isna().all()
    assert failed["error_message"].iloc[0] == result["failures"]["first_error"]
    for png in rows.loc[rows["status"] == "success", "image"]:
        assert np.asarray(Image.open(io.BytesIO(png))).max() > 0  # no black image among the stored ones


def test_sd_all_nan_weights_fail_every_example_and_name_the_fp16_fix(tiny_sd_folder: Path, tmp_path: Path) -> None:
    broken = _broken_copy(tiny_sd_folder, tmp_path / "sd-broken-vae", VAE, "decoder.conv_out.bias")
    model = load_model("tiny-sd", {**FAST_SD, "weights": str(broken)})
    with pytest.raises(NonFiniteImageError) as caught:
        model.generate([["a red bicycle"], ["two dogs"]], [1, 2])
    assert caught.value.images == [None, None]
    assert "2 of 2 images" in str(caught.value)
    model.options.dtype = "fp16"  # what the message says under fp16 (the default on GPU)
    with pytest.raises(NonFiniteImageError, match="numerical overflow in fp16; rerun with --model-opt dtype=fp32 "
                                                  "or dtype=bf16"):
        model.generate([["a red bicycle"]], [1])


def test_glide_nan_in_one_examples_prompt_fails_that_example_only(tmp_path: Path) -> None:
    import torch

    from gill_eval.models.glide.tokenizer import glide_tokenizer
    from gill_eval.models.tiny import tiny_glide_dir

    broken = tmp_path / "glide-broken-token"
    shutil.copytree(tiny_glide_dir(tmp_path / "tiny-glide"), broken)
    tokens = sorted(set(glide_tokenizer().encode("a zebra")) - set(glide_tokenizer().encode("a red bus")))
    assert tokens
    state = torch.load(broken / "base.pt", weights_only=True)
    state["token_embedding.weight"][tokens] = float("nan")
    torch.save(state, broken / "base.pt")
    model = load_model("tiny-glide", {"base_steps": "2", "upsample_steps": "2", "device": "cpu",
                                      "weights": str(broken)})
    with pytest.raises(NonFiniteImageError) as caught:
        model.generate([["a red bus"], ["a zebra"]], [7, 9])
    images = caught.value.images
    assert images[1] is None and np.asarray(images[0]).std() > 0
    assert "not fp16, so the weights are broken: check " + str(broken) in caught.value.reason


def test_gill_nan_images_fail_with_the_reason(tiny_root: Path, tmp_path: Path) -> None:
    from gill_eval.models.gill.tiny import tiny_gill_dir

    folder = tiny_gill_dir(root=tiny_root)
    broken = _broken_copy(folder / "sd", tmp_path / "sd-broken-vae", VAE, "decoder.conv_out.bias")
    model = load_model("tiny-gill", {"checkpoint": str(folder), "sd": str(broken), "steps": "1", "height": "32",
                                     "width": "32", "device": "cpu", "precision": "fp32"})
    with pytest.raises(NonFiniteImageError) as caught:
        model.generate([["a dog on the beach"], ["a cat"]], [1, 2])
    assert caught.value.images == [None, None]
    assert caught.value.reason == ("non-finite pixels (NaN/inf) in the generated image: not fp16, so the weights "
                                   f"are broken: check {broken} or stage them again")
