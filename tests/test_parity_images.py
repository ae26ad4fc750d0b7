"""Image-input parity: every image-taking network gets exactly the arrays the paper's own code gives it.

The oracles below are written from the official scripts (kohjingyu/gill ``evals/``, ``gill/utils.py``,
kohjingyu/fromage ``evals/eval_vist_retrieval.py``), not from gill-eval's code:

- VIST photos (``download_vist_images.py`` -> ``utils.get_image_from_url``): ``Image.open(original)``,
  ``.resize((224, 224))`` with Pillow's default filter in the photo's own mode, ``.convert('RGB')``, PNG.
- GILL inputs (``generate_vist_images.py``; FROMAGe retrieval candidates likewise): that PNG,
  ``.convert('RGB').resize((224, 224))``, then the CLIP feature extractor.
- CLIP similarity (``compute_clip_similarity_*.py``): transformers 4.30's ``CLIPProcessor``: RGB, bicubic
  short side to 224 (long side ``int(224 * long / short)``), centre crop with floored offsets,
  ``uint8 * (1 / 255)`` in float64 cast to float32, ``(x - mean) / std`` in float32.
- LPIPS (``lpips_2dirs.py``): ``cv2.imread(path)[:, :, ::-1]``, ``x / 127.5 - 1`` in float64 to a float32
  tensor, ``torchvision resize((256, 256), antialias=True)``.
- FID (gill-eval's declared resize, docs/protocols.md): the photo's centred square, LANCZOS to 256, uint8.

Fixtures have awkward sizes and modes (4:3, 3:4, 640x427, 3x5, a 27-megapixel photo, L, CMYK JPEG, RGBA
PNG, palette PNG) and go through the real download path (img2dataset against a loopback server).
"""

from __future__ import annotations

import functools
import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torchvision.transforms.functional as TF
from httpserver import LoopbackServer
from PIL import Image
from typer.testing import CliRunner

from gill_eval.cli import app

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# ------------------------------------------------------------------------------------------ fixtures


def _smooth_rgb(w: int, h: int, seed: int) -> Image.Image:
    """Smooth colour fields plus pixel-level detail, so that filters and crop offsets all show."""
    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((w, h), Image.Resampling.BILINEAR)
    if w * h > 4_000_000:
        return base
    detail = rng.integers(-24, 25, (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(base).astype(np.int16) + detail, 0, 255).astype(np.uint8))


def _encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _rgba(w: int, h: int) -> Image.Image:
    rgb = np.asarray(_smooth_rgb(w, h, 7))
    alpha = np.tile(np.linspace(0, 255, w).astype(np.uint8), (h, 1))
    alpha[: h // 4] = 0  # a fully transparent band: premultiplied resizing matters there
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


@functools.cache
def fixture_files() -> dict[str, bytes]:
    """name -> encoded bytes, as a web server or Flickr would serve them."""
    return {
        "r43.jpg": _encode(_smooth_rgb(640, 480, 1), "JPEG"),
        "r34.jpg": _encode(_smooth_rgb(480, 640, 2), "JPEG"),
        "r640x427.jpg": _encode(_smooth_rgb(640, 427, 3), "JPEG"),
        "tiny.png": _encode(_smooth_rgb(3, 5, 4), "PNG"),
        "huge.jpg": _encode(_smooth_rgb(6000, 4500, 5), "JPEG"),
        "gray.jpg": _encode(_smooth_rgb(500, 375, 6).convert("L"), "JPEG"),
        "cmyk.jpg": _encode(_smooth_rgb(400, 300, 8).convert("CMYK"), "JPEG"),
        "rgba.png": _encode(_rgba(300, 400), "PNG"),
        "pal.png": _encode(_smooth_rgb(333, 250, 9).quantize(64), "PNG"),
    }


NAMES = list(fixture_files())
PHOTO_IDS = {name: f"70000000{i:02d}" for i, name in enumerate(NAMES)}
STORY_A = ["r43.jpg", "r34.jpg", "r640x427.jpg", "tiny.png", "gray.jpg"]
STORY_B = ["cmyk.jpg", "rgba.png", "pal.png", "huge.jpg", "r43.jpg"]


# ------------------------------------------------------------------------------------------ oracles


@functools.cache
def official_vist_png(name: str) -> Image.Image:
    """download_vist_images.py: get_image_from_url's resize then convert, saved as PNG and read back."""
    img = Image.open(io.BytesIO(fixture_files()[name]))
    img = img.resize((224, 224))
    img = img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return Image.open(io.BytesIO(buf.getvalue()))


def official_gill_input(png: Image.Image) -> Image.Image:
    """generate_vist_images.py: each context image opened, converted to RGB, resized to 224x224."""
    return png.convert("RGB").resize((224, 224))


def hf_clip_pixels(img: Image.Image, side: int = 224) -> np.ndarray:
    """transformers 4.30 CLIPImageProcessor (what GILL's CLIP feature extractor and CLIPProcessor run)."""
    im = img.convert("RGB")
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    if short != side:
        new_long = int(side * long / short)
        im = im.resize((side, new_long) if w <= h else (new_long, side), Image.Resampling.BICUBIC, reducing_gap=None)
    a = np.asarray(im)
    top, left = (a.shape[0] - side) // 2, (a.shape[1] - side) // 2
    a = a[top : top + side, left : left + side]
    x = (a * (1 / 255)).astype(np.float32)
    x = (x - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    return x.transpose(2, 0, 1)


def lpips_input(path: Path) -> torch.Tensor:
    """lpips_2dirs.py: lpips.load_image (cv2, RGB), im2tensor, resize to 256x256 with antialias."""
    import cv2

    image = cv2.imread(str(path))[:, :, ::-1]
    t = torch.Tensor((image / (255.0 / 2.0) - 1.0)[:, :, :, np.newaxis].transpose((3, 2, 0, 1)))
    return TF.resize(t, (256, 256), antialias=True)


@functools.cache
def fid_input(name: str) -> np.ndarray:
    """The declared FID resize: centred square of the RGB photo, LANCZOS to 256, HWC uint8."""
    im = Image.open(io.BytesIO(fixture_files()[name])).convert("RGB")
    w, h = im.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return np.asarray(im.crop((left, top, left + s, top + s)).resize((256, 256), Image.Resampling.LANCZOS))


# ------------------------------------------------------------------- prepared datasets (real download path)


def _cli(data: Path, *args: str):
    return CliRunner().invoke(app, ["--data-dir", str(data), *args])


def _sis(server) -> dict:
    images = [{"id": pid, "url_o": server.url(f"file/{name}"), "album_id": "1", "media": "photo"}
              for name, pid in PHOTO_IDS.items()]
    annotations = []
    for story_id, names in (("81", STORY_A), ("82", STORY_B)):
        for k, name in enumerate(names):
            annotations.append([{"story_id": story_id, "album_id": "1", "photo_flickr_id": PHOTO_IDS[name],
                                 "worker_arranged_photo_order": k, "text": f"story {story_id} sentence {k} .",
                                 "original_text": f"Story {story_id} sentence {k}."}])
    return {"images": images, "annotations": annotations, "albums": [], "info": {}, "type": "story_in_sequence"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """`prepare vist` and `prepare cc3m --split val` with their default --store, through img2dataset."""
    root = tmp_path_factory.mktemp("parity")
    files = fixture_files()
    with LoopbackServer() as server:
        server.files.update(files)
        sis = root / "val.story-in-sequence.json"
        sis.write_text(json.dumps(_sis(server)), encoding="utf-8")
        tsv = root / "cc3m.tsv"
        tsv.write_text("".join(f"caption {n}\t{server.url('file/' + n)}\n" for n in NAMES), encoding="utf-8")
        opts = ["--processes", "1", "--threads", "4", "--timeout", "20"]
        vist = _cli(root / "data", "prepare", "vist", "--sis", str(sis), *opts, "--json")
        assert vist.exit_code == 0, vist.output
        cc3m = _cli(root / "data", "prepare", "cc3m", "--tsv", str(tsv), "--split", "val", *opts, "--json")
        assert cc3m.exit_code == 0, cc3m.output
    return root / "data" / "datasets", files


def _stored(folder: Path) -> dict[str, dict]:
    rows = [r for p in sorted((folder / "images").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    return {r["key"]: r for r in rows}


# ------------------------------------------------------------------------------------------ item 6


def test_vist_stores_the_official_224_png_pixels(prepared):
    datasets, files = prepared
    stored = _stored(datasets / "vist")
    assert set(stored) == set(PHOTO_IDS.values())
    for name, pid in PHOTO_IDS.items():
        row = stored[pid]
        assert row["status"] == "success", (name, row["error_message"])
        got = Image.open(io.BytesIO(row["image"]))
        assert got.format == "PNG" and got.mode == "RGB" and got.size == (224, 224), name
        assert np.array_equal(np.asarray(got), np.asarray(official_vist_png(name))), name
        w, h = Image.open(io.BytesIO(files[name])).size
        assert (row["original_width"], row["original_height"]) == (w, h), name


def test_vist_references_are_the_official_pixels(prepared):
    from gill_eval.bench.data import PreparedDataset
    from gill_eval.bench.vist import VistBenchmark, VistStories

    datasets, files = prepared
    bench = VistBenchmark(VistStories(PreparedDataset("vist", datasets / "vist")))
    refs = bench.references(["81", "82"])
    for story, name in (("81", STORY_A[-1]), ("82", STORY_B[-1])):
        # the scorers get references as stored; compute_clip_similarity_vist.py and lpips_2dirs.py read
        # sis/val_images/{id}.png as it is
        assert np.array_equal(np.asarray(refs[story]), np.asarray(official_vist_png(name).convert("RGB"))), name


def test_vist_refuses_images_not_stored_as_gill_224(prepared, tmp_path):
    import shutil

    from gill_eval.bench.data import PreparedDataset
    from gill_eval.bench.vist import VistStories
    from gill_eval.errors import InputError
    from gill_eval.store import read_manifest, write_manifest

    datasets, _ = prepared
    copy = tmp_path / "vist"
    shutil.copytree(datasets / "vist", copy)
    manifest = read_manifest(copy)
    manifest.options = {**manifest.options, "store": "img2dataset"}
    write_manifest(copy, manifest)
    with pytest.raises(InputError, match="prepare vist"):
        VistStories(PreparedDataset("vist", copy)).stories  # noqa: B018 - the property raises


# ------------------------------------------------------------------------------------------ item 5


@pytest.fixture(scope="module")
def gill(tmp_path_factory):
    from gill_eval.models.gill.load import load_gill, resolve_sources
    from gill_eval.models.gill.tiny import tiny_gill_dir

    folder = tiny_gill_dir(root=tmp_path_factory.mktemp("tiny-gill"))
    return load_gill(resolve_sources(str(folder)), precision="fp32", device="cpu")


class _VisionSpy(torch.nn.Module):
    """Wraps GILL's CLIP vision tower and keeps every pixel tensor it receives."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen: list[torch.Tensor] = []

    def forward(self, pixel_values: torch.Tensor):
        self.seen.append(pixel_values.detach().clone())
        return self.inner(pixel_values=pixel_values)


def _side(gill) -> int:
    return int(gill.image_processor.crop_size["height"])


def test_gill_squashes_a_4_3_image_before_its_clip_processor(gill, monkeypatch):
    spy = _VisionSpy(gill.vision)
    monkeypatch.setattr(gill, "vision", spy)
    image = _smooth_rgb(640, 480, 11)
    gill.clip_pooled([image])
    (got,) = torch.cat(spy.seen).numpy()
    expected = gill.image_processor(images=[image.resize((224, 224))], return_tensors="pt").pixel_values[0].numpy()
    assert np.array_equal(got, expected)
    assert np.array_equal(got, hf_clip_pixels(image.resize((224, 224)), _side(gill)))
    cropped = hf_clip_pixels(image, _side(gill))  # what the processor alone would give: a centre crop
    assert not np.allclose(got, cropped, atol=1e-3)


def test_gill_vist_contexts_and_retrieval_candidates_get_official_pixels(prepared, gill, monkeypatch):
    from gill_eval.bench.data import PreparedDataset
    from gill_eval.bench.vist import VistBenchmark, VistStories

    datasets, files = prepared
    stories = VistStories(PreparedDataset("vist", datasets / "vist"))
    spy = _VisionSpy(gill.vision)
    monkeypatch.setattr(gill, "vision", spy)
    contexts = VistBenchmark(stories).job("5c4i").build_contexts(["81", "82"])
    for context in contexts:
        gill.embed_context(context)
    expected = [hf_clip_pixels(official_gill_input(official_vist_png(n)), _side(gill))
                for n in STORY_A[:4] + STORY_B[:4]]
    seen = torch.cat(spy.seen)  # in context order, however the model batches its images
    assert len(seen) == len(expected)
    for got, exp, name in zip(seen, expected, STORY_A[:4] + STORY_B[:4], strict=True):
        assert np.array_equal(got.numpy(), exp), name
    spy.seen.clear()
    candidates = stories.dataset.images(PHOTO_IDS.values())  # FROMAGe: get_image_from_url, then the extractor
    gill.retrieval_images([candidates[PHOTO_IDS[n]] for n in NAMES])
    seen = torch.cat(spy.seen)
    for got, name in zip(seen, NAMES, strict=True):
        assert np.array_equal(got.numpy(), hf_clip_pixels(official_vist_png(name), _side(gill))), name


# ------------------------------------------------------------------------------------------ CLIP similarity


def _decoded(files: dict[str, bytes]) -> dict[str, Image.Image]:
    from gill_eval.bench.data import decode_image

    return {name: decode_image(data, name) for name, data in files.items() if name != "huge.jpg"}


def test_clip_similarity_pixels_and_values_match_the_official_processor(prepared):
    from types import SimpleNamespace

    from gill_eval.bench.scorers import Scorers, ScorerSpec
    from gill_eval.metrics.clip_similarity import clip_similarity, official_clip_preprocess

    _, files = prepared
    images = _decoded(files)
    real_size = SimpleNamespace(visual=SimpleNamespace(preprocess_cfg={"size": (224, 224), "mean": CLIP_MEAN,
                                                                          "std": CLIP_STD}))
    at_224 = official_clip_preprocess(real_size)
    for name, im in images.items():
        assert np.array_equal(at_224(im).numpy(), hf_clip_pixels(im)), name
    embedder = Scorers(ScorerSpec(preset="tiny")).clip
    side = embedder.model.visual.preprocess_cfg["size"][0]
    names = list(images)
    gen, ref = [images[n] for n in names], [images[n] for n in names[::-1]]
    for name in names:
        assert np.array_equal(embedder.preprocess(images[name]).numpy(), hf_clip_pixels(images[name], side)), name
    with torch.no_grad():
        def feats(ims):
            x = torch.from_numpy(np.stack([hf_clip_pixels(im, side) for im in ims]))
            f = embedder.model.encode_image(x).float()
            return f / f.norm(dim=-1, keepdim=True)
        oracle = (feats(gen) * feats(ref)).sum(-1).numpy()
    np.testing.assert_allclose(clip_similarity(embedder, gen, ref), oracle, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------ LPIPS


def test_lpips_inputs_and_values_match_lpips_2dirs(prepared, tmp_path):
    from gill_eval.bench.data import decode_image
    from gill_eval.metrics.lpips import LpipsScorer, build_lpips, to_lpips_tensor

    datasets, files = prepared
    stored = _stored(datasets / "vist")
    # lpips_2dirs.py reads the 224x224 reference PNGs and the generated 512x512 PNGs from disk
    paths, images = [], []
    for i, name in enumerate(NAMES):
        png = stored[PHOTO_IDS[name]]["image"]
        path = tmp_path / f"{i}.png"
        path.write_bytes(png)
        paths.append(path)
        images.append(decode_image(png, name))
    generated = _smooth_rgb(512, 512, 21)
    (tmp_path / "gen.png").write_bytes(_encode(generated, "PNG"))
    for name in ("r43.jpg", "r640x427.jpg", "gray.jpg"):  # VisDial references are JPEGs read the same way
        path = tmp_path / name
        path.write_bytes(files[name])
        paths.append(path)
        images.append(decode_image(files[name], name))
    for path, im in zip(paths, images, strict=True):
        assert torch.equal(to_lpips_tensor([im]), lpips_input(path)), path.name
    net, _ = build_lpips("random")
    gen = [decode_image((tmp_path / "gen.png").read_bytes(), "gen")] * len(images)
    with torch.no_grad():
        oracle = [float(net.forward(lpips_input(tmp_path / "gen.png"), lpips_input(p))) for p in paths]
    np.testing.assert_allclose(LpipsScorer(net, batch_size=4).score(gen, images), oracle, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------ FID, item 1


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    from gill_eval.metrics.fid import build_random_inception_weights, load_inception

    path = build_random_inception_weights(tmp_path_factory.mktemp("inception") / "random.pt", seed=0)
    return load_inception(path)


def test_cc3m_val_stores_the_fid_input_not_a_letterbox(prepared):
    datasets, files = prepared
    manifest = json.loads((datasets / "cc3m-val" / "manifest.json").read_text())
    assert manifest["options"]["store"] == "center-crop" and "resize_mode" not in manifest["options"]
    stored = _stored(datasets / "cc3m-val")
    for i, name in enumerate(NAMES):
        row = stored[f"{i:09d}"]
        assert row["status"] == "success", (name, row["error_message"])
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(row["image"]))), fid_input(name)), name


def test_inception_receives_the_declared_resize(prepared, inception):
    """Generated images and any other in-memory image reach Inception as the declared resize, uint8."""
    from gill_eval.metrics.fid import extract_features

    _, files = prepared
    net, _ = inception
    seen: list[torch.Tensor] = []

    def spy(x):
        seen.append(x.clone())
        return net(x)

    names = ["r640x427.jpg", "tiny.png", "cmyk.jpg", "rgba.png", "pal.png"]
    images = _decoded(files)
    extract_features(spy, [images[n] for n in names], "cpu", batch_size=2)
    got = torch.cat(seen)
    expected = torch.from_numpy(np.stack([fid_input(n) for n in names])).permute(0, 3, 1, 2)
    assert got.dtype == torch.uint8 and torch.equal(got, expected)


def test_cc3m_fid_references_equal_the_cropped_photos(prepared, inception):
    """The reference set reaches Inception as the photos centre-cropped, so FID(references, the same photos
    cropped) is 0: no letterbox bars survive into the references."""
    from gill_eval.bench.caption_fid import cc3m_fid
    from gill_eval.bench.data import PreparedDataset
    from gill_eval.bench.fid_common import reference_statistics

    datasets, _ = prepared
    net, sha = inception
    inputs: list[torch.Tensor] = []
    outputs: list[np.ndarray] = []

    def spy(x):
        inputs.append(x.clone())
        out = net(x)
        outputs.append(out[0].double().numpy())
        return out

    bench = cc3m_fid(dataset=PreparedDataset("cc3m-val", datasets / "cc3m-val"))
    stats, meta = reference_statistics(bench, spy, sha, "cpu")
    assert meta["n"] == len(NAMES)
    expected = torch.from_numpy(np.stack([fid_input(n) for n in NAMES])).permute(0, 3, 1, 2)
    assert torch.equal(torch.cat(inputs), expected)  # keys 0..8 are the TSV rows in NAMES order
    feats = np.concatenate(outputs)  # the features of exactly the cropped photos
    mu, sigma = feats.mean(0), np.cov(feats, rowvar=False)
    np.testing.assert_allclose(stats["mu"], mu, atol=1e-6)
    np.testing.assert_allclose(stats["sigma"], sigma, atol=1e-6)
    # the Fréchet distance by the symmetric form tr sqrt(S1^1/2 S2 S1^1/2), eigenvalues clipped at 0
    vals, vecs = np.linalg.eigh(sigma)
    root = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    inner = np.linalg.eigvalsh(root @ stats["sigma"] @ root)
    fid = float(((stats["mu"] - mu) ** 2).sum() + np.trace(sigma) + np.trace(stats["sigma"])
                - 2 * np.sqrt(np.clip(inner, 0, None)).sum())
    assert abs(fid) < 1e-3


def test_fid_refuses_letterboxed_references(prepared, tmp_path):
    import shutil

    from gill_eval.bench.caption_fid import cc3m_fid
    from gill_eval.bench.data import PreparedDataset
    from gill_eval.errors import InputError
    from gill_eval.store import read_manifest, write_manifest

    datasets, _ = prepared
    copy = tmp_path / "cc3m-val"
    shutil.copytree(datasets / "cc3m-val", copy)
    manifest = read_manifest(copy)  # as `prepare cc3m` recorded img2dataset's letterbox before this fix
    manifest.options = {"split": "val", "store": "img2dataset", "resize_mode": "border", "image_size": 256}
    write_manifest(copy, manifest)
    with pytest.raises(InputError, match=r"letterboxed.*prepare cc3m --split val --overwrite"):
        cc3m_fid(dataset=PreparedDataset("cc3m-val", copy)).reference_keys()
