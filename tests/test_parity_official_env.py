"""gill-eval's network inputs against oracles computed in GILL's own environment.

The fixtures in tests/fixtures/official_env were made by tools/official_env/make_fixtures.py inside a side
environment with GILL's pins (transformers 4.30.2, Pillow 9.4.0, no ftfy, torchmetrics 0.11.4, OpenCV for
``lpips_2dirs.py``), from code written from the official scripts. Here they are compared with what
gill-eval computes in *this* environment, so a library upgrade that moves an input fails a test.
`.ci/run` rebuilds the fixtures when the side environment can be built and checks they are unchanged.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

FIXTURES = Path(__file__).parent / "fixtures" / "official_env"
META = json.loads((FIXTURES / "images.json").read_text(encoding="utf-8"))
NAMES = sorted(META)
TRANSPARENT = ["rgba_300x200.png", "la_200x300.png", "ptrns_250x190.png", "ptrns_250x190.gif"]
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _sha(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _open(name: str) -> Image.Image:
    return Image.open(io.BytesIO((FIXTURES / "images" / name).read_bytes()))


@pytest.fixture(scope="module")
def vist224():
    with np.load(FIXTURES / "images.npz") as z:
        return {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("vist224/")}


def test_fixture_set_covers_the_awkward_cases():
    modes = {META[n]["mode"] for n in NAMES}
    assert {"RGB", "L", "CMYK", "I", "P", "1", "RGBA", "LA"} <= modes
    assert set(TRANSPARENT) <= set(NAMES)
    for name in NAMES:  # the committed files are the ones the oracle read
        assert hashlib.sha256((FIXTURES / "images" / name).read_bytes()).hexdigest() == META[name]["sha256_file"]


@pytest.mark.parametrize("name", NAMES)
def test_gill_224_squash_equals_pillow_9_4(name, vist224):
    """VIST photos and every GILL image input: get_image_from_url under Pillow 9.4 (the 640x427 and 427x640
    photos move by up to 4/255 under Pillow 13's resampling)."""
    from gill_eval.resizes import squash_224

    got = np.asarray(squash_224(_open(name)))
    diff = np.abs(got.astype(int) - vist224[name].astype(int))
    assert diff.max() == 0, f"{name}: max diff {diff.max()}/255 on {(diff > 0).mean():.1%} of values"


@pytest.mark.parametrize("name", NAMES)
def test_fid_input_equals_pillow_9_4(name):
    from gill_eval.metrics.fid import fid_uint8

    assert _sha(fid_uint8(_open(name))) == META[name]["sha256_fid256"], name


def _vit_l14_processor():
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224},
                                 image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))


@pytest.mark.parametrize("name", NAMES)
def test_clip_similarity_pixel_values_equal_transformers_4_30(name):
    """compute_clip_similarity_*.py's processor input, float bits included; transparency (RGBA, LA, P with
    tRNS, GIF) is dropped by Pillow's plain conversion, not painted white."""
    from types import SimpleNamespace

    from gill_eval.metrics.clip_similarity import official_clip_preprocess

    model = SimpleNamespace(visual=SimpleNamespace(preprocess_cfg={"size": (224, 224), "mean": CLIP_MEAN,
                                                                    "std": CLIP_STD}))
    got = official_clip_preprocess(model)(_open(name)).numpy().astype(np.float32)
    assert _sha(got) == META[name]["sha256_clip_similarity_pixel_values"], name


class _Seen(Exception):
    pass


@pytest.mark.parametrize("name", NAMES)
def test_gill_pixel_values_equal_transformers_4_30(name, gill_model, monkeypatch):
    """What GILL's CLIP tower receives for an input image (get_image_from_url, then the feature extractor)."""
    seen: list[torch.Tensor] = []

    class Vision(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, pixel_values):
            seen.append(pixel_values)
            raise _Seen

    monkeypatch.setattr(gill_model, "image_processor", _vit_l14_processor())
    monkeypatch.setattr(gill_model, "vision", Vision())
    with pytest.raises(_Seen):
        gill_model.clip_pooled([_open(name)])
    assert _sha(seen[0][0].numpy().astype(np.float32)) == META[name]["sha256_gill_pixel_values"], name


@pytest.fixture(scope="module")
def gill_model(tmp_path_factory):
    from gill_eval.models.gill.load import load_gill, resolve_sources
    from gill_eval.models.gill.tiny import tiny_gill_dir

    folder = tiny_gill_dir(root=tmp_path_factory.mktemp("tiny-gill"))
    return load_gill(resolve_sources(str(folder)), precision="fp32", device="cpu")


LPIPS_SAME = [n for n in NAMES if META[n]["sha256_lpips_input"] and n.split("_")[0] in ("rgb", "gray", "rgba", "pal")]


@pytest.mark.parametrize("name", LPIPS_SAME)
def test_lpips_inputs_equal_lpips_2dirs(name):
    """lpips_2dirs.py reads with OpenCV; gill-eval's Pillow decode gives the same tensor for the files it
    reads (VIST's 224 PNGs, VisDial's RGB and grayscale JPEGs)."""
    from gill_eval.bench.data import decode_image
    from gill_eval.metrics.lpips import to_lpips_tensor

    data = (FIXTURES / "images" / name).read_bytes()
    got = to_lpips_tensor([decode_image(data, name)]).numpy().astype(np.float32)
    assert _sha(got) == META[name]["sha256_lpips_input"], name


def test_lpips_recorded_differences_still_hold():
    """Recorded in docs/protocols.md: OpenCV applies EXIF orientation and converts CMYK and 16-bit itself,
    so for those files lpips_2dirs.py saw other pixels than Pillow gives (no VIST or VisDial reference is
    such a file). If this fails, the difference is gone and the docs should say so."""
    from gill_eval.bench.data import decode_image
    from gill_eval.metrics.lpips import to_lpips_tensor

    for name in ("exif6_320x240.jpg", "cmyk_300x240.jpg", "gray16_210x150.png"):
        data = (FIXTURES / "images" / name).read_bytes()
        got = to_lpips_tensor([decode_image(data, name)]).numpy().astype(np.float32)
        assert _sha(got) != META[name]["sha256_lpips_input"], name
    assert META["exif6_320x240.jpg"]["cv2_decoded_shape"] == [320, 240, 3]  # OpenCV rotated it


# ------------------------------------------------------------------------------------------ SD tokens


@pytest.fixture(scope="module")
def token_rows():
    return json.loads((FIXTURES / "tokens.json").read_text(encoding="utf-8"))["rows"]


def _sd_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    rows = tokenizer(texts, padding="max_length", max_length=77, truncation=True).input_ids
    return [r[: r.index(49407) + 1] for r in rows]


def test_sd_prompt_ids_equal_gills_tokenizer(token_rows):
    """Every PartiPrompts prompt (and hand-made ones: accents, curly quotes, CJK, control characters, long
    prompts) gets the ids of transformers 4.30.2's slow CLIPTokenizer without ftfy, through the SD model's
    default clean-up and the sd-text stage's."""
    from gill_eval.clip_text import clean_prompts
    from gill_eval.features.sd_text import CaptionTokenizer
    from gill_eval.models.tiny import build_clip_tokenizer

    tokenizer = build_clip_tokenizer()
    prompts = [r["prompt"] for r in token_rows]
    expected = [r["ids"] for r in token_rows]
    assert _sd_ids(tokenizer, clean_prompts(prompts, "gill")) == expected
    import pyarrow as pa

    _, ids = CaptionTokenizer(tokenizer)(pa.table({"caption": prompts[:300]}))
    assert [r[: r.index(49407) + 1] for r in ids.tolist()] == expected[:300]
    # without the clean-up, transformers 5's own tokenizer differs on many prompts (contractions, accents)
    raw = _sd_ids(tokenizer, prompts)
    assert sum(a != b for a, b in zip(raw, expected, strict=True)) >= 50


def test_sd_model_passes_cleaned_prompts_to_the_pipeline():
    from gill_eval.models.stable_diffusion import SDOptions, StableDiffusionModel
    from gill_eval.models.tiny import build_clip_tokenizer

    seen: list[str] = []

    class Pipe:
        tokenizer = build_clip_tokenizer()
        scheduler = None

        def __call__(self, prompt, generator, output_type, **kwargs):
            seen.extend(prompt)
            from types import SimpleNamespace

            return SimpleNamespace(images=np.zeros((len(prompt), 8, 8, 3), np.float32), nsfw_content_detected=None)

    model = StableDiffusionModel.__new__(StableDiffusionModel)
    model.options = SDOptions(height=8, width=8)
    model.pipe, model.source, model.name = Pipe(), None, "sd"
    model.generate([["San Francisco's Café"]], [0])
    assert seen == ["san francisco ' s cafe"]
    model.options = SDOptions(height=8, width=8, text_cleanup="none")
    seen.clear()
    model.generate([["San Francisco's Café"]], [0])
    assert seen == ["San Francisco's Café"]


# ------------------------------------------------------------------------------------------ Table 6


def test_table6_best_f1_is_the_notebooks_at_half():
    """The notebook's training cell, run under torchmetrics 0.11.4 on fixed synthetic features: F1 at
    t = 0.5 every 100 steps and its maximum ("Best F1"); gill-eval's training records the same values,
    selects the same checkpoint, and sweeps the 50-point grid on that checkpoint."""
    from gill_eval.decision.classifier import train_linear_dropout

    doc = json.loads((FIXTURES / "table6.json").read_text(encoding="utf-8"))
    with np.load(FIXTURES / "table6.npz") as z:
        x, y = z["features"], z["labels"]
    n = doc["num_train"]
    model = train_linear_dropout(x[:n], y[:n], val=(x[n:], y[n:]))
    history = model.meta["checkpoints"]
    assert [h["step"] for h in history] == doc["steps"]
    np.testing.assert_allclose([h["at_half"] for h in history], doc["val_f1_at_half"], rtol=0, atol=1e-6)
    best = model.meta["best_checkpoint"]
    assert best["step"] == doc["steps"][doc["best_index"]]
    assert best["f1"] == pytest.approx(doc["best_f1"], abs=1e-6)
    np.testing.assert_allclose(best["sweep_f1"], doc["grid_f1_per_checkpoint"][doc["best_index"]], rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------ doctor


def test_doctor_reports_one_line_per_check_and_fails_on_a_moved_input(monkeypatch):
    from typer.testing import CliRunner

    import gill_eval.resizes as resizes
    from gill_eval.cli import app

    ok = CliRunner().invoke(app, ["doctor", "--fixtures", str(FIXTURES), "--json"])
    assert ok.exit_code == 0, ok.output
    checks = {c["name"]: c["status"] for c in json.loads(ok.stdout)["checks"]}
    assert checks == {"pillow": "ok", "transformers": "ok", "gill-224-squash": "ok", "fid-resize": "ok",
                      "clip-similarity-pixels": "ok", "gill-pixels": "ok", "sd-prompt-tokens": "ok"}
    # a resize that is not GILL's (bilinear instead of Pillow's default) must be reported, exit 1
    monkeypatch.setattr(resizes, "squash_224", lambda im: resizes.plain_rgb(im.resize((224, 224), Image.Resampling.BILINEAR)))
    bad = CliRunner().invoke(app, ["doctor", "--fixtures", str(FIXTURES)])
    assert bad.exit_code == 1
    lines = bad.stdout.strip().splitlines()
    assert len(lines) == 7 and lines[2].startswith("fail gill-224-squash:") and "rgb_640x427.jpg" in lines[2]


def test_pixel_cap_is_an_option_not_a_global(monkeypatch):
    import gill_eval.bench.data  # noqa: F401 - importing gill-eval's readers leaves Pillow's limit alone
    from gill_eval.errors import InputError
    from gill_eval.store.images import decode_image

    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow's default, as in the official scripts
    data = (FIXTURES / "images" / "rgb_640x427.jpg").read_bytes()
    monkeypatch.setenv("GILL_EVAL_MAX_IMAGE_PIXELS", str(640 * 427 - 1))
    with pytest.raises(InputError, match=r"k1: 640x427 exceeds GILL_EVAL_MAX_IMAGE_PIXELS"):
        decode_image(data, "k1")
    monkeypatch.setenv("GILL_EVAL_MAX_IMAGE_PIXELS", str(640 * 427))
    assert decode_image(data, "k1").size == (640, 427)
