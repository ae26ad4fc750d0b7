"""Metrics against independent oracles: direct library calls, closed forms, brute force."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from gill_eval.metrics import fid, recall, stats
from gill_eval.metrics.clip_similarity import ClipImageEmbedder, clip_similarity
from gill_eval.metrics.lpips import ALEXNET_FILE, LpipsScorer, build_lpips


def _images(n: int, seed: int, size=(48, 40)) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from gill_eval.models.tiny import tiny_clip_dir
    from gill_eval.models.weights import load_open_clip

    folder = tiny_clip_dir(root=tmp_path_factory.mktemp("clip"))
    model, preprocess, _ = load_open_clip(pretrained=str(folder))
    return model, preprocess


def test_clip_similarity_equals_direct_open_clip(tiny_clip):
    model, preprocess = tiny_clip
    gen, ref = _images(3, 1), _images(3, 2, size=(64, 30))
    ours = clip_similarity(ClipImageEmbedder(model, preprocess, batch_size=2), gen, ref)
    with torch.no_grad():
        for i in range(3):
            a = model.encode_image(preprocess(gen[i]).unsqueeze(0))
            b = model.encode_image(preprocess(ref[i]).unsqueeze(0))
            direct = torch.nn.functional.cosine_similarity(a, b).item()
            assert ours[i] == pytest.approx(direct, abs=1e-5)
    single = clip_similarity(ClipImageEmbedder(model, preprocess, batch_size=1), gen, ref)
    np.testing.assert_allclose(single, ours, atol=1e-6)
    assert not np.allclose(ours, ours[0])  # different pairs give different numbers


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory) -> Path:
    """A seeded random torchvision AlexNet state dict, as the real file would be laid out."""
    from torchvision.models import alexnet

    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("torch_home") / "hub" / "checkpoints" / ALEXNET_FILE
    path.parent.mkdir(parents=True)
    torch.save(alexnet().state_dict(), path)
    return path


def test_lpips_equals_direct_lpips_call(alexnet_file, monkeypatch):
    import lpips
    import torchvision.transforms.functional as TF

    gen, ref = _images(2, 5, size=(70, 50)), _images(2, 6, size=(33, 90))
    net, trunk = build_lpips(alexnet_file)
    ours = LpipsScorer(net, batch_size=1).score(gen, ref)
    # The official path: lpips builds torchvision's AlexNet, which reads the cache file in TORCH_HOME.
    monkeypatch.setenv("TORCH_HOME", str(alexnet_file.parents[2]))
    direct_net = lpips.LPIPS(net="alex", version="0.1", verbose=False)

    def prep(im):  # GILL: resize both to 256x256, bilinear with antialias; lpips takes [-1, 1]
        t = TF.pil_to_tensor(im).float() / 255.0
        return TF.resize(t, [256, 256], antialias=True).unsqueeze(0) * 2 - 1

    with torch.no_grad():
        for i in range(2):
            assert ours[i] == pytest.approx(direct_net(prep(gen[i]), prep(ref[i])).item(), abs=1e-5)
            assert direct_net(prep(gen[i]), prep(gen[i])).item() == pytest.approx(0.0, abs=1e-7)
    assert ours[0] > 0 and ours[0] != pytest.approx(ours[1])


def test_lpips_offline_without_trunk_names_the_fetch_command(monkeypatch, tmp_path):
    from gill_eval.errors import OfflineError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("GILL_EVAL_OFFLINE", "1")
    with pytest.raises(OfflineError, match="models fetch lpips-alex"):
        build_lpips(None)


# ------------------------------------------------------------------------------------------------ FID


def _commuting(dim: int, seed: int):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    a, b = rng.uniform(0.1, 2.0, dim), rng.uniform(0.1, 2.0, dim)
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    closed = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    return {"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, closed


def test_frechet_distance_matches_closed_form_on_commuting_covariances():
    s1, s2, closed = _commuting(16, 0)
    assert fid.frechet_distance(s1, s2) == pytest.approx(closed, rel=1e-9)
    assert fid.frechet_distance(s1, s1) == pytest.approx(0.0, abs=1e-9)
    scaled = {"mu": s1["mu"], "sigma": 4.0 * s1["sigma"]}  # S2 = c^2 S1 -> (1-c)^2 tr S1
    assert fid.frechet_distance(s1, scaled) == pytest.approx(np.trace(s1["sigma"]), rel=1e-9)


def test_streaming_statistics_equal_torch_fidelity_on_same_features():
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    rng = np.random.default_rng(1)
    x = (rng.normal(size=(300, 8)) * rng.uniform(0.5, 2, 8) + 100.0).astype(np.float32)  # offset: cancellation trap
    y = (rng.normal(size=(200, 8)) * 1.3 + 100.4).astype(np.float32)
    run_x, run_y = fid.RunningStats(8), fid.RunningStats(8)
    for start in range(0, 300, 37):
        run_x.update(x[start : start + 37])
    run_y.update(y)
    sx, sy = run_x.statistics(), run_y.statistics()
    np.testing.assert_allclose(sx["sigma"], np.cov(x.astype(np.float64), rowvar=False), rtol=1e-10, atol=1e-12)
    tf_x, tf_y = fid_features_to_statistics(torch.from_numpy(x)), fid_features_to_statistics(torch.from_numpy(y))
    expected = fid_statistics_to_metric(tf_x, tf_y, verbose=False)["frechet_inception_distance"]
    assert fid.frechet_distance(sx, sy) == pytest.approx(expected, rel=1e-5)


def test_statistics_by_group_equal_numpy_per_group_and_skip_unlabelled_rows():
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(500, 6)) + 50.0).astype(np.float32)
    labels = [int(v) for v in rng.integers(0, 3, 500)]
    labels = [None if i % 7 == 0 else v for i, v in enumerate(labels)]
    got = fid.statistics_by_group(x, labels, chunk=64)
    assert sorted(got) == [0, 1, 2]
    for g in range(3):
        rows = x[[i for i, v in enumerate(labels) if v == g]].astype(np.float64)
        np.testing.assert_allclose(got[g]["mu"], rows.mean(0), rtol=1e-12)
        np.testing.assert_allclose(got[g]["sigma"], np.cov(rows, rowvar=False), rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="labels"):
        fid.statistics_by_group(x, labels[:-1])


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    path = fid.build_random_inception_weights(tmp_path_factory.mktemp("incep") / "inception.pt", seed=0)
    net, sha = fid.load_inception(path)
    return net, sha


def test_random_inception_features_are_usable_and_fid_is_torch_fidelitys(inception):
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    net, sha = inception
    assert len(sha) == 64
    a = fid.extract_features(net, _images(6, 10, size=(40, 56)), batch_size=4)
    b = fid.extract_features(net, [im.rotate(90) for im in _images(6, 11, size=(64, 64))], batch_size=4)
    assert a.shape == (6, 2048) and 0.05 < a.std() < 5
    one = fid.extract_features(net, _images(6, 10, size=(40, 56)), batch_size=1)
    np.testing.assert_allclose(one, a, rtol=1e-4, atol=1e-5)
    ra, rb = fid.RunningStats(), fid.RunningStats()
    ra.update(a)
    rb.update(b)
    ours = fid.frechet_distance(ra.statistics(), rb.statistics())
    ta, tb = fid_features_to_statistics(torch.from_numpy(a)), fid_features_to_statistics(torch.from_numpy(b))
    tb = {"mu": tb["mu"], "sigma": tb["sigma"]}
    expected = fid_statistics_to_metric(ta, tb, verbose=False)["frechet_inception_distance"]
    assert ours == pytest.approx(expected, rel=1e-4)
    assert ours > 1e-3


def test_reference_cache_is_keyed_by_content_and_round_trips(tmp_path):
    s1, _, _ = _commuting(4, 2)
    key = fid.ReferenceKey("manifest-a", fid.RESIZE_MODE, fid.EXTRACTOR, "w" * 64)
    other = fid.ReferenceKey("manifest-a", fid.RESIZE_MODE, fid.EXTRACTOR, "v" * 64)
    fid.store_reference(key, s1, n=10)
    assert fid.cached_reference(other) is None
    out = fid.export_reference(key, tmp_path / "ref.npz")
    for p in fid.reference_cache_dir().glob("*.npz"):
        p.unlink()
    assert fid.cached_reference(key) is None
    fid.import_reference(out)
    got, meta = fid.cached_reference(key)
    np.testing.assert_array_equal(got["sigma"], s1["sigma"])
    assert meta["n"] == 10 and meta["weights_sha256"] == "w" * 64


# --------------------------------------------------------------------------------------------- recall


def test_recall_equals_brute_force_sort_with_ties_and_exclusions():
    rng = np.random.default_rng(4)
    scores = rng.integers(0, 4, size=(40, 25)).astype(np.float64)  # many ties
    targets = rng.integers(0, 25, 40)
    exclude = [[int(c) for c in rng.choice([c for c in range(25) if c != t], 4, replace=False)] for t in targets]
    masked = recall.apply_exclusions(scores, exclude)
    ranks = recall.pessimistic_ranks(masked, targets)
    for q in range(40):
        allowed = [c for c in range(25) if c not in exclude[q]]
        # ties placed before the target (pessimistic), then by index
        order = sorted(allowed, key=lambda c: (-scores[q, c], c == targets[q], c))
        assert ranks[q] == order.index(targets[q])
    got = recall.recall_at_k(ranks, (1, 5, 10))
    for k in (1, 5, 10):
        assert got[k] == pytest.approx(np.mean([r < k for r in ranks]))
    assert got[1] < got[5] < got[10]


# ---------------------------------------------------------------------------------------------- stats


def _rows(values: dict[tuple[str, int], float]) -> pd.DataFrame:
    return pd.DataFrame([{"example_id": e, "seed": s, "value": v} for (e, s), v in values.items()])


def test_aggregate_is_mean_and_std_of_per_seed_means():
    rng = np.random.default_rng(0)
    vals = {(f"e{i}", s): float(rng.normal(s, 1)) for i in range(30) for s in range(3)}
    agg = stats.aggregate(_rows(vals), replicates=200)
    per_seed = [np.mean([vals[(f"e{i}", s)] for i in range(30)]) for s in range(3)]
    assert agg.mean == pytest.approx(np.mean(per_seed))
    assert agg.std_over_seeds == pytest.approx(np.std(per_seed, ddof=1))
    assert agg.ci_low < agg.mean < agg.ci_high and agg.n_examples == 30 and agg.n_seeds == 3


def test_aggregate_uses_only_examples_scored_under_every_seed():
    """A pair that failed under one seed must not make that seed average an easier set of examples."""
    rows = _rows({("hard", 0): 0.2, ("easy", 0): 0.8, ("easy", 1): 0.8})
    agg = stats.aggregate(rows, replicates=50)
    assert agg.mean == pytest.approx(0.8) and agg.std_over_seeds == pytest.approx(0.0)
    assert agg.n_examples == 1 and agg.n_seeds == 2
    with pytest.raises(ValueError, match="every seed"):
        stats.aggregate(_rows({("a", 0): 0.1, ("b", 1): 0.2}), replicates=10)


def test_paired_difference_is_exact_for_a_constant_shift():
    rng = np.random.default_rng(1)
    a = {(f"e{i}", s): float(rng.normal()) for i in range(20) for s in range(2)}
    b = {k: v - 0.25 for k, v in a.items()}
    d = stats.paired_difference(_rows(a), _rows(b), replicates=100)
    assert d.diff == pytest.approx(0.25) and d.ci_low == pytest.approx(0.25) and d.ci_high == pytest.approx(0.25)
    assert d.n_pairs == 40


def test_paired_difference_counts_only_the_pairs_it_uses():
    """An example missing (or failed) under one seed for either model leaves the comparison with all its seeds."""
    rng = np.random.default_rng(3)
    a = {(f"e{i}", s): float(rng.normal()) for i in range(10) for s in range(3)}
    b = {k: v - 0.5 for k, v in a.items()}
    del a[("e0", 1)]  # A never scored e0 under seed 1
    b[("e1", 2)] = float("nan")  # B failed e1 under seed 2
    d = stats.paired_difference(_rows(a), _rows(b), replicates=50)
    assert d.n_pairs == 8 * 3  # not 29 merged rows: e0 and e1 drop out under every seed
    assert d.diff == pytest.approx(0.5)


def test_over_seeds_is_mean_std_and_student_t_interval():
    agg = stats.over_seeds([1.0, 2.0, 3.0, 4.0], n_examples=100)
    std = np.sqrt(((np.array([1, 2, 3, 4]) - 2.5) ** 2).sum() / 3)
    half = 3.182446305284263 * std / 2  # t(0.975, 3 d.f.), from the table
    assert (agg.mean, agg.n_examples, agg.n_seeds) == (2.5, 100, 4)
    assert agg.std_over_seeds == pytest.approx(std)
    assert agg.ci_low == pytest.approx(2.5 - half) and agg.ci_high == pytest.approx(2.5 + half)
    single = stats.over_seeds([7.0], n_examples=5)
    assert single.mean == 7.0 and single.std_over_seeds is None and single.ci_low is None and single.ci_high is None
