"""The assembled tiny GILL, loaded from its official-layout folder through the real loading code."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from gill_eval.errors import InputError
from gill_eval.models.gill.load import load_gill, resolve_sources
from gill_eval.models.gill.model import GILL, DecodeSettings, SDSettings
from gill_eval.models.registry import load_model


@pytest.fixture(scope="session")
def tiny_gill_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gill_eval.models.gill.tiny import tiny_gill_dir

    return tiny_gill_dir(root=tmp_path_factory.mktemp("tiny-gill"))


@pytest.fixture(scope="session")
def gill(tiny_gill_folder: Path) -> GILL:
    return load_gill(resolve_sources(str(tiny_gill_folder)), precision="fp32", device="cpu")


def _image(color: str) -> Image.Image:
    return Image.new("RGB", (48, 40), color)


class RecordingPipe:
    """Wraps the real SD pipeline and records the keyword arguments of each call."""

    def __init__(self, pipe: Any) -> None:
        self.pipe, self.calls = pipe, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipe, name)

    def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self.pipe(**kwargs)


def test_img_rows_are_restored_and_tied_to_the_output_rows(gill: GILL, tiny_gill_folder: Path) -> None:
    raw = torch.load(tiny_gill_folder / "pretrained_ckpt.pth.tar", map_location="cpu", weights_only=True)
    rows = raw["state_dict"]["model.input_embeddings.weight"].float()
    ids = list(gill.tokens.img_ids)
    assert gill.lm.get_output_embeddings().weight is gill.embedding.weight
    torch.testing.assert_close(gill.embedding.weight[ids], rows, rtol=0, atol=0)
    assert gill.embedding.weight.shape[0] == gill.tokens.vocab_size == len(gill.tokenizer)
    # the logit of [IMGk] is hidden . E[IMGk]
    prefix = gill.embed_context(["a dog on the beach"])
    hidden, logits = gill.lm_forward(prefix)
    torch.testing.assert_close(logits[ids], hidden[0, -1] @ rows.T, rtol=1e-5, atol=1e-5)


def test_hidden_state_is_after_the_final_layer_norm(gill: GILL) -> None:
    captured = {}
    decoder = gill.lm.model.decoder
    handle = decoder.layers[-1].register_forward_hook(
        lambda m, i, o: captured.update(out=o[0] if isinstance(o, tuple) else o))
    try:
        hidden, _ = gill.lm_forward(gill.embed_context(["a red car"]))
    finally:
        handle.remove()
    torch.testing.assert_close(hidden, decoder.final_layer_norm(captured["out"]))
    # causal: appending tokens does not change the states of the earlier positions
    longer, _ = gill.lm_forward(gill.embed_context(["a red car", " parked by the river"]))
    torch.testing.assert_close(longer[:, :hidden.shape[1]], hidden, rtol=1e-5, atol=1e-5)


def test_interleaved_context_places_visual_tokens_and_bos_only_first(gill: GILL) -> None:
    red, blue = _image("red"), _image("blue")
    context = [red, "a dog", blue, "runs on the beach"]
    emb = gill.embed_context(context)
    tok = gill.tokenizer
    first = tok("a dog", add_special_tokens=True).input_ids
    second = tok("runs on the beach", add_special_tokens=False).input_ids
    assert first[0] == 2 and second[0] != 2
    W, B = gill.heads.visual_embeddings.weight, gill.heads.visual_embeddings.bias
    d = gill.heads.dims.lm_dim

    def visual(im: Image.Image) -> torch.Tensor:
        pixels = gill.image_processor(images=[im], return_tensors="pt").pixel_values
        pooled = gill.vision(pixel_values=pixels).pooler_output
        return torch.stack([pooled[0] @ W[k * d:(k + 1) * d].T + B[k * d:(k + 1) * d] for k in range(4)])

    table = gill.embedding.weight
    expected = torch.cat([visual(red), table[first], visual(blue), table[second]])
    assert emb.shape == (1, 8 + len(first) + len(second), d)
    torch.testing.assert_close(emb[0], expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="at least one text item"):
        gill.embed_context([red])


def test_img0_rule_takes_the_absolute_value_and_suppresses_img1_to_7(gill: GILL) -> None:
    prefix = gill.embed_context(["a small house"])
    hidden, _ = gill.lm_forward(prefix)
    h = hidden[0, -1] / hidden[0, -1].norm()
    img = list(gill.tokens.img_ids)
    weight = gill.embedding.weight
    saved = weight[img].clone()
    try:
        with torch.no_grad():
            weight[img[0]] = -0.01 * h  # a negative [IMG0] logit
            weight[img[3]] = 50.0 * h  # [IMG3] would win every argmax if it were not suppressed
        _, logits = gill.lm_forward(prefix)
        assert logits[img[0]] < 0 and int(torch.argmax(logits)) == img[3]
        forced = gill.decode(prefix, DecodeSettings(num_words=2, gen_scale_factor=1e5))
        assert forced.ids[:8] == img
        assert forced.hidden.shape[1] == 8
        plain = gill.decode(prefix, DecodeSettings(num_words=1, gen_scale_factor=1.0))
        masked = logits.clone()
        masked[img[1:]] = float("-inf")
        assert plain.ids == [int(torch.argmax(masked))] and plain.ids[0] not in img
    finally:
        with torch.no_grad():
            weight[img] = saved


def test_forced_generation_feeds_mapper_output_to_sd_and_is_deterministic(gill: GILL) -> None:
    context = ["a cat", _image("green"), "sitting on a table"]
    settings = DecodeSettings()
    decoded = gill.decode(gill.embed_context(context), settings)
    assert decoded.ids[:8] == list(gill.tokens.img_ids)
    block = gill.img_block(decoded)
    # independent: the LM run over context + the 8 [IMG] embeddings gives the states at those positions
    prefix = gill.embed_context(context)
    full = torch.cat([prefix, gill.embed_ids(gill.tokens.img_ids)], dim=1)
    hidden, _ = gill.lm_forward(full)
    torch.testing.assert_close(block, hidden[:, prefix.shape[1]:], rtol=1e-5, atol=1e-5)
    img_rows = gill.embedding.weight[list(gill.tokens.img_ids)][None]
    expected = gill.heads.generation(hidden[:, prefix.shape[1]:], img_rows)

    recorder = RecordingPipe(gill.sd_pipe)
    gill._sd = recorder
    try:
        sd = SDSettings(steps=3, height=64, width=64)
        pe = gill.prompt_embeds(block)
        image_a, _ = gill.sd_image(pe, torch.Generator().manual_seed(5), sd)
        image_b, _ = gill.sd_image(pe, torch.Generator().manual_seed(5), sd)
        image_c, _ = gill.sd_image(pe, torch.Generator().manual_seed(6), sd)
    finally:
        gill._sd = recorder.pipe
    cross_dim = gill.sd_pipe.unet.config.cross_attention_dim
    sent = recorder.calls[0]
    # on CPU a lone row is sent twice (MIN_GEMM_ROWS with guidance), the repeat's image is dropped
    assert sent["prompt_embeds"].shape == (2, 77, cross_dim) and len(sent["generator"]) == 2
    torch.testing.assert_close(sent["prompt_embeds"][:1], expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(sent["prompt_embeds"][1], sent["prompt_embeds"][0])
    assert (sent["guidance_scale"], sent["num_inference_steps"], sent["height"], sent["width"]) == (7.5, 3, 64, 64)
    assert "negative_prompt_embeds" not in sent and "prompt" not in sent
    assert type(gill.sd_pipe.scheduler).__name__ == "PNDMScheduler"
    assert np.array_equal(np.asarray(image_a), np.asarray(image_b))
    assert not np.array_equal(np.asarray(image_a), np.asarray(image_c))


def test_adapter_capabilities_through_the_registry(tiny_gill_folder: Path, gill: GILL) -> None:
    model = load_model("gill", {"checkpoint": str(tiny_gill_folder), "steps": "2", "height": "64", "width": "64",
                                "device": "cpu"})
    model._gill = gill  # the same weights, already loaded by the session fixture
    images = model.generate([["a bird over the river"], ["a bird over the river"]], [3, 3])
    assert images[0].size == (64, 64) and np.array_equal(np.asarray(images[0]), np.asarray(images[1]))

    queries = model.embed_queries([["a dog"], ["a dog", _image("red"), "at night"]])
    assert queries.shape == (2, gill.heads.dims.ret_emb_dim) and queries.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    block = gill.retrieval_states(["a dog"])  # FROMAGe's layout (tests/test_parity_gill_retrieval.py)
    raw = gill.heads.ret_text_hidden_fcs[0].model(block[0, 0])
    np.testing.assert_allclose(queries[0], (raw / raw.norm()).detach().numpy(), atol=1e-5)

    imgs = model.embed_images([_image("red"), _image("blue")])
    pixels = gill.image_processor(images=[_image("blue")], return_tensors="pt").pixel_values
    pooled = gill.vision(pixel_values=pixels).pooler_output
    vec = gill.heads.visual_fc(pooled)[0]
    np.testing.assert_allclose(imgs[1], (vec / vec.norm()).detach().numpy(), atol=1e-5)

    feats = model.decision_features(["a dog", "a photo of the sky"])
    assert feats.shape == (2, gill.heads.dims.lm_dim)
    np.testing.assert_allclose(feats[0], block[0, 0].numpy(), atol=1e-6)
    probs = model.official_decisions(feats)
    state = torch.load(tiny_gill_folder / "decision_model.pth.tar", map_location="cpu", weights_only=True)["state_dict"]
    logits = feats @ state["1.weight"].numpy().T + state["1.bias"].numpy()
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert math.isclose(float(probs[0].sum()), 1.0, abs_tol=1e-6)


def test_cli_generate_with_the_tiny_checkpoint_offline(tiny_gill_folder: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gill_eval.cli import app

    out = tmp_path / "gill.png"
    Image.new("RGB", (40, 40), "yellow").save(tmp_path / "in.png")
    result = CliRunner().invoke(app, [
        "--offline", "generate", "--model", "gill", "--model-opt", f"checkpoint={tiny_gill_folder}",
        "--model-opt", "steps=2", "--model-opt", "height=64", "--model-opt", "width=64", "--model-opt", "device=cpu",
        "--prompt", "a dog", "--image", str(tmp_path / "in.png"), "--prompt", "at night", "--seed", "0",
        "--out", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        assert image.size == (64, 64)
    missing = CliRunner().invoke(app, ["--offline", "generate", "--model", "gill", "--model-opt",
                                       f"checkpoint={tmp_path / 'absent'}", "--prompt", "a", "--out", str(out)])
    assert missing.exit_code == 2 and "GILL checkpoint folder not found" in missing.output
