"""FID and retrieval benchmarks on the fixture: cached reference statistics, the FROMAGe protocol."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gill_eval.bench.caption_fid import coco_fid
from gill_eval.bench.results import SCORES_FILE
from gill_eval.bench.runner import RunOptions, run_benchmark
from gill_eval.bench.scorers import Scorers, ScorerSpec
from gill_eval.bench.vist import VistStories
from gill_eval.bench.vist_retrieval import VistRetrieval
from gill_eval.metrics import fid
from gill_eval.models.base import RETRIEVE, Model
from test_bench import ToyModel
from test_bench_data import build_fixture_data


def _colour_embedding(image: Image.Image) -> np.ndarray:
    v = np.asarray(image.convert("RGB").resize((4, 4), Image.Resampling.BOX), dtype=np.float32).reshape(-1) - 127.5
    return v / np.linalg.norm(v)


class ToyRetriever(Model):
    """Query = the colour layout of the context's last image (which the protocol must exclude)."""

    name = "toy-retriever"
    capabilities = frozenset({RETRIEVE})

    def embed_queries(self, contexts):
        return np.stack([_colour_embedding([x for x in c if isinstance(x, Image.Image)][-1]) for c in contexts])

    def embed_images(self, images):
        return np.stack([_colour_embedding(im) for im in images])


@pytest.fixture
def shared_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GILL_EVAL_CACHE", str(tmp_path_factory.getbasetemp() / "bench-shared-cache"))


def test_coco_fid_uses_content_keyed_reference_statistics(shared_cache, tmp_path):
    build_fixture_data()
    for p in fid.reference_cache_dir().glob("*.npz"):
        p.unlink()
    scorers = Scorers(ScorerSpec(preset="tiny"))
    first = run_benchmark(coco_fid(None), ToyModel(), "captions", RunOptions((0,), fid_bootstrap=5), scorers)
    agg = first["metrics"]["fid"]["aggregate"]
    assert first["fid_reference"]["cached"] is False and first["fid_reference"]["n"] == 5
    assert agg["mean"] > 0 and agg["ci_low"] <= agg["ci_high"] and first["metrics"]["fid"]["n_evaluated"] == 4
    assert "rank-deficient" in first["metrics"]["fid"]["warning"]
    # the same FID from torch-fidelity's statistics on the same features (oracle)
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    net, _ = scorers.inception
    bench = coco_fid(None)
    refs = bench.dataset.images(bench.reference_keys())
    ref_feats = fid.extract_features(net, [refs[k] for k in sorted(refs)])
    [gen_npy] = list(__import__("pathlib").Path(first["generation"]["dir"]).glob("inception-*.npy"))
    gen_feats = np.load(gen_npy)
    stat = lambda f: {"mu": f.astype(np.float64).mean(0), "sigma": np.cov(f.astype(np.float64), rowvar=False)}  # noqa: E731
    expected = fid_statistics_to_metric(stat(gen_feats), stat(ref_feats), verbose=False)["frechet_inception_distance"]
    assert agg["mean"] == pytest.approx(expected, rel=1e-4)
    second = run_benchmark(coco_fid(None), ToyModel(), "captions", RunOptions((0,), fid_bootstrap=5), scorers)
    assert second["fid_reference"]["cached"] is True and second["metrics"]["fid"]["aggregate"]["mean"] == agg["mean"]


def test_retrieval_follows_the_fromage_protocol(shared_cache):
    build_fixture_data()
    result = VistRetrieval().run(ToyRetriever(), None, {"preset": "none"})
    stories = VistStories()
    cands = sorted({p for s in stories.stories.values() for p in s["photo_ids"] if p in stories.dataset.available()})
    assert result["data"]["candidates"] == len(cands) and result["n_expected"] == 6
    images = stories.dataset.images(cands)
    emb = {c: _colour_embedding(images[c]) for c in cands}
    ranks = pd.read_parquet(f"{result['_dir']}/{SCORES_FILE}").query("metric == 'rank'").set_index("example_id")["value"]
    for sid in stories.complete:
        photos = stories.stories[sid]["photo_ids"]
        q = emb[photos[3]]
        allowed = [c for c in cands if c not in photos[:4]]
        target_score = float(q @ emb[photos[4]])
        expected = sum(float(q @ emb[c]) >= target_score for c in allowed if c != photos[4])
        assert ranks[sid] == expected
    hits = [ranks[s] < 1 for s in stories.complete]
    assert result["metrics"]["R@1"]["aggregate"]["mean"] == pytest.approx(100 * np.mean(hits))
    unsupported = VistRetrieval().run(ToyModel(), None, {"preset": "none"})
    assert unsupported["status"] == "unsupported"
