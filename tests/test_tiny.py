"""Tiny models round-trip through the same loaders as real weights, and match independent builds."""

from __future__ import annotations

import open_clip
import pytest
import torch
from open_clip.model import CLIP

from gill_eval.models.tiny import (TINY_CLIP_CFG, TINY_CLIP_NAME, TINY_CLIP_WEIGHTS, build_clip_tokenizer,
                                   tiny_clip_dir, tiny_sd_dir, tiny_text_encoder)
from gill_eval.models.weights import load_open_clip, load_sd_pipeline, load_sd_text_encoder



def test_clip_tokenizer_matches_open_clip_except_padding():
    tok = build_clip_tokenizer()
    texts = ["A photo of a cat on the mat.", "two dogs, running; in the park!", "x " * 100]
    ids = tok(texts, padding="max_length", max_length=77, truncation=True).input_ids
    ref = open_clip.tokenize(texts)  # pads with 0, truncates right keeping the end token
    assert len(tok) == 49408 and tok.bos_token_id == 49406 and tok.eos_token_id == tok.pad_token_id == 49407
    for row, oc in zip(ids, ref.tolist()):
        n = oc.index(49407) + 1
        assert row[:n] == oc[:n]
        assert row[n:] == [49407] * (77 - n)


def test_tiny_clip_round_trip_and_quick_gelu(tmp_path):
    folder = tiny_clip_dir(tmp_path, seed=3)
    assert tiny_clip_dir(tmp_path, seed=3) == folder  # cached
    torch.manual_seed(3)
    reference = CLIP(**TINY_CLIP_CFG, quick_gelu=True).eval()  # independent build with the same seed
    images = torch.randn(4, 3, 32, 32)
    text = open_clip.tokenize(["a cat", "a dog"])
    with torch.no_grad():
        want_img, want_txt = reference.encode_image(images), reference.encode_text(text)
        by_file, pre, tok = load_open_clip(str(folder / f"{TINY_CLIP_NAME}.json"), str(folder / TINY_CLIP_WEIGHTS))
        by_dir, _, _ = load_open_clip(pretrained=str(folder))
        gelu, _, _ = load_open_clip(str(folder / f"{TINY_CLIP_NAME}.json"), str(folder / TINY_CLIP_WEIGHTS),
                                    quick_gelu=False)
        for model in (by_file, by_dir):
            torch.testing.assert_close(model.encode_image(images), want_img)
            torch.testing.assert_close(model.encode_text(tok(["a cat", "a dog"])), want_txt)
        # A bare file loaded without QuickGELU builds plain GELU: the silent open_clip trap.
        assert not torch.allclose(gelu.encode_image(images), want_img, atol=1e-4)
    assert not by_file.training


def test_tiny_seeds_differ(tmp_path):
    a = tiny_text_encoder(0).get_input_embeddings().weight
    b = tiny_text_encoder(1).get_input_embeddings().weight
    assert not torch.equal(a, b)


def test_tiny_sd_round_trip(tmp_path):
    folder = tiny_sd_dir(tmp_path)
    tok, enc = load_sd_text_encoder(str(folder))
    pipe = load_sd_pipeline(str(folder), scheduler="DDIMScheduler")
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    ref = tiny_text_encoder(0)
    ids = tok(["a red bus"], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(enc(ids)[0], ref(ids)[0], rtol=0, atol=0)
        torch.testing.assert_close(pipe.text_encoder(ids)[0], ref(ids)[0], rtol=0, atol=0)
    image = pipe("a red bus", num_inference_steps=2, height=64, width=64, output_type="np",
                 generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 64, 64, 3)


def test_unknown_scheduler_is_a_config_error(tmp_path):
    from gill_eval.errors import ConfigError

    with pytest.raises(ConfigError, match="NoSuchScheduler"):
        load_sd_pipeline(str(tiny_sd_dir(tmp_path)), scheduler="NoSuchScheduler")
