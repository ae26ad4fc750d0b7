"""KID and CLIPScore, the extra columns of the FID tables, against independent oracles: torch-fidelity's own
``calculate_metrics(kid=True)`` on image folders, KID's closed form, and a per-pair CLIPScore built from Hugging
Face's CLIP tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gill_eval.bench.caption_fid import coco_fid
from gill_eval.bench.registry import find
from gill_eval.bench.runner import RunOptions, run_benchmark
from gill_eval.bench.scorers import Scorers, ScorerSpec
from gill_eval.errors import InputError
from gill_eval.metrics import fid, kid
from gill_eval.metrics.clip_score import clip_score
from gill_eval.metrics.clip_similarity import official_clip_preprocess
from gill_eval.models.base import example_seed
from gill_eval.models.tiny import build_clip_tokenizer
from gill_eval.report.tables import render_table
from gill_eval.store import cache_root
from test_bench import ToyModel
from test_bench_data import build_fixture_data


def _poly(x: np.ndarray, y: np.ndarray) -> float:
    return (float(np.dot(x, y)) / len(x) + 1.0) ** 3


def test_kid_is_the_unbiased_polynomial_mmd_of_its_closed_form():
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 1.0, (24, 8)).astype(np.float32)
    y = rng.normal(0.4, 1.3, (24, 8)).astype(np.float32)
    m = len(x)
    xx = sum(_poly(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(_poly(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(_poly(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    got = kid.kid(x, y, subsets=5)  # subsets of all 24 rows: permutations, each giving the same estimate
    assert got.subset_size == 24 and got.subsets == 5
    assert got.mean == pytest.approx(xx + yy - 2 * xy, rel=1e-5)
    assert got.std == pytest.approx(0.0, abs=1e-4 * abs(got.mean))


def test_kid_needs_two_images_a_side():
    with pytest.raises(InputError, match="at least 2 images"):
        kid.kid(np.zeros((1, 4), np.float32), np.zeros((5, 4), np.float32))


@pytest.fixture
def shared_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GILL_EVAL_CACHE", str(tmp_path_factory.getbasetemp() / "bench-shared-cache"))


def _write_fid_inputs(images: list[Image.Image], folder) -> None:
    folder.mkdir()
    for i, image in enumerate(images):  # FID's declared input (centre square, LANCZOS 256) as lossless files
        Image.fromarray(fid.fid_uint8(image)).save(folder / f"{i:03d}.png")


def test_coco_fid_reports_torch_fidelity_kid_and_a_clipscore_column(shared_cache, tmp_path):
    import torch_fidelity

    build_fixture_data()
    for p in fid.reference_cache_dir().glob("*"):
        p.unlink()  # the reference features must come from this run's extraction pass
    scorers = Scorers(ScorerSpec(preset="tiny"))
    result = run_benchmark(coco_fid(None), ToyModel(), "captions", RunOptions((0, 1)), scorers)
    bench = coco_fid(None)
    ids = sorted(bench.captions)
    refs = bench.dataset.images(bench.reference_keys())
    _write_fid_inputs([refs[k] for k in sorted(refs)], tmp_path / "ref")
    weights = cache_root() / "tiny" / "fid-inception-random-seed0.pt"  # the tiny scorers' Inception
    m = result["metrics"]["kid"]
    assert m["subset_size"] == 4 and m["subsets"] == kid.SUBSETS and "fewer than" in m["warning"]
    for seed in (0, 1):
        _write_fid_inputs(ToyModel().generate([[bench.captions[e]] for e in ids], [example_seed(seed, e) for e in ids]),
                          tmp_path / f"gen{seed}")
        expected = torch_fidelity.calculate_metrics(
            input1=str(tmp_path / f"gen{seed}"), input2=str(tmp_path / "ref"), kid=True, kid_subset_size=4,
            feature_extractor_weights_path=str(weights), cuda=False, cache=False, verbose=False, batch_size=8, save_cpu_ram=True)
        got = m["per_seed"][str(seed)]
        assert got["mean"] == pytest.approx(expected["kernel_inception_distance_mean"], rel=1e-4, abs=1e-9)
        assert got["std"] == pytest.approx(expected["kernel_inception_distance_std"], rel=1e-3, abs=1e-9)
    means = [m["per_seed"][s]["mean"] for s in ("0", "1")]
    assert m["aggregate"]["mean"] == pytest.approx(np.mean(means)) and m["aggregate"]["n_seeds"] == 2
    assert len(list(fid.reference_cache_dir().glob("*-features.npy"))) == 1

    # the CLIPScore column: each image against its own caption, 100 * max(cos, 0), averaged as CLIP similarity is
    cs = result["metrics"]["clip_score"]
    assert cs["n_evaluated"] == 8 and 0.0 <= cs["aggregate"]["mean"] <= 100.0
    table = render_table(find("coco-fid").layout, [result], None, {}).markdown
    header = next(line for line in table.splitlines() if line.startswith("| Model"))
    assert header == "| Model | FID ↓ | KID ↓ (extra) | CLIPScore ↑ (extra) |"


def _oracle_clip_score(model: torch.nn.Module, image: Image.Image, text: str) -> float:
    hf = build_clip_tokenizer()
    ids = hf(text, truncation=True, max_length=77).input_ids  # <|startoftext|> ... <|endoftext|>, cut to 77
    tokens = torch.zeros(1, 77, dtype=torch.long)
    tokens[0, : len(ids)] = torch.tensor(ids)
    with torch.no_grad():
        t = model.encode_text(tokens)[0].double()
        i = model.encode_image(official_clip_preprocess(model)(image.convert("RGB"))[None])[0].double()
    cos = float(t @ i / (t.norm() * i.norm()))
    return 100.0 * max(cos, 0.0)


def test_clipscore_equals_a_per_pair_brute_force(shared_cache):
    scorers = Scorers(ScorerSpec(preset="tiny"))
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in
              [(40, 40), (48, 64), (64, 30)] * 7]
    texts = ["A Photo of a   cat", "two dogs on a beach .", "an empty room", "x " * 120,  # the last is cut to 77 tokens
             *[f"caption number {i} with a red {'car' if i % 2 else 'bus'}" for i in range(17)]]
    got = clip_score(scorers.clip, scorers.clip_text, images, texts)
    model = scorers.clip.model
    expected = np.array([_oracle_clip_score(model, im, t) for im, t in zip(images, texts, strict=True)])
    assert np.allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert (expected == 0).any() and (expected > 0).any()  # the clamp at 0 was exercised both ways
