"""`annotate build` with tiny models: the official SD protocol (one generator seeded 1337 across batches of 16)
against diffusers called the official way, top-1 retrieval against a brute-force search, resume mid-build,
gold items; and `decision train --labels` on collected labels equals training on the published ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image
from typer.testing import CliRunner

from annotate_support import official_kit, page_exports
from gill_eval.annotate.collect import collect
from gill_eval.annotate.items import Kit
from gill_eval.cli import app
from gill_eval.features import api as features_api
from gill_eval.store.features import feature_dir, iter_clip_features
from gill_eval.models.tiny import tiny_clip_dir, tiny_sd_dir
from test_features import make_dataset

runner = CliRunner()
N = 18  # two batches of the official 16


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def official_images(prompts: list[str]) -> list[np.ndarray]:
    """GILL's scripts/generate_sd_p2_images.py, on the tiny pipeline and the CPU (oracle)."""
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd_dir()))
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator(device="cpu").manual_seed(1337)
    out = []
    for start in range(0, len(prompts), 16):
        images = pipe(prompts[start : start + 16], generator=generator, num_inference_steps=2,
                      height=64, width=64).images
        out += [np.asarray(im.convert("RGB")) for im in images]
    return out


def build_args(out: Path) -> list[str]:
    return ["annotate", "build", "--out", str(out), "--index", "ds", "--gen-model", "tiny-sd", "--gen-opt", "steps=2",
            "--retrieval-model", "tiny-clip-retrieval", "--limit", str(N), "--order-seed", "3", "--gold", "2", "--json"]


def test_build_official_protocol_retrieval_gold_and_resume(tmp_path: Path) -> None:
    make_dataset("ds", shards=2, per_shard=10)
    features_api.clip("ds", pretrained=str(tiny_clip_dir()), device="cpu", batch_size=8)
    out = tmp_path / "kit"
    result = runner.invoke(app, build_args(out))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["items"] == N + 2 and summary["generation"] == "official-shared-generator"
    kit = Kit.read(out)
    assert kit.meta["generation"]["seed"] == 1337 and kit.meta["generation"]["batch_size"] == 16
    items = {i.id: i for i in kit.items}
    real = [items[f"parti-{k:04d}"] for k in range(N)]

    def image_of(item, source: str) -> Path:
        return out / (item.image_a if item.a == source else item.image_b)

    # generated images: the official protocol, image for image (the second batch continues the generator)
    expected = official_images([i.prompt for i in real])
    for item, want in zip(real, expected):
        np.testing.assert_array_equal(pixels(image_of(item, "gen")), want)
    # retrieved images: the brute-force top-1 over the successful features
    keys, vectors = [], []
    for batch in iter_clip_features(feature_dir("clip", "ds")):
        keys += [k for k, ok in zip(batch.keys, batch.ok) if ok]
        vectors.append(batch.embeddings[batch.ok])
    emb = np.concatenate(vectors)
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    from gill_eval.models.registry import load_model

    queries = load_model("tiny-clip-retrieval").embed_queries([[i.prompt] for i in real])
    best = [keys[j] for j in (queries @ emb.T).argmax(axis=1)]
    assert [kit.meta["retrieved"][i.id]["key"] for i in real] == best
    from gill_eval.bench.data import PreparedDataset

    stored = PreparedDataset("ds").images(best)
    for item, key in zip(real, best):
        np.testing.assert_array_equal(pixels(image_of(item, "ret")), np.asarray(stored[key]))
    # the A/B order is mixed and recorded; gold items pair a generated image with another prompt's retrieval
    assert {i.a for i in real} == {"gen", "ret"}
    gold = [i for i in kit.items if i.gold is not None]
    assert len(gold) == 2
    for g in gold:
        slot_path = out / (g.image_a if g.gold == "A" else g.image_b)
        owner = next(i for i in real if i.prompt == g.prompt)
        assert slot_path.read_bytes() == image_of(owner, "gen").read_bytes()
    # resume: the second batch's images and generator state are lost; a rerun continues the same stream
    before = {p.name: p.read_bytes() for p in (out / "images").iterdir()}
    for name in ("state-00001.bin", "parti-0016.png", "parti-0017.png"):
        (out / "work" / "gen" / name).unlink()
    shutil.rmtree(out / "images")
    (out / "tasks.json").unlink()
    result = runner.invoke(app, build_args(out))
    assert result.exit_code == 0, result.output
    assert {p.name: p.read_bytes() for p in (out / "images").iterdir()} == before
    # a rerun with other options refuses to mix the two
    other = build_args(out)
    other[other.index("steps=2")] = "steps=3"
    result = runner.invoke(app, other)
    assert result.exit_code == 2 and "other options" in result.stderr


def test_decision_train_on_collected_labels_equals_the_published_labels(tmp_path: Path, partiprompts_dir: Path) -> None:
    from gill_eval.datasets.partiprompts_prepare import prepare
    from gill_eval.decision.annotations import load_labelled

    prepare(str(partiprompts_dir))
    kit = official_kit(tmp_path / "kit")
    labels = tmp_path / "annotations" / "mine"
    collect(page_exports(kit, tmp_path), kit.folder, labels)
    for kind in ("alignment", "realism"):
        ours, published = load_labelled(None, kind, labels), load_labelled(None, kind)
        assert ours.keys == published.keys and ours.votes == published.votes
        np.testing.assert_array_equal(ours.labels, published.labels)
        np.testing.assert_array_equal(ours.splits, published.splits)
    rng = np.random.default_rng(0)
    vectors = tmp_path / "vectors.parquet"
    pq.write_table(pa.table({"key": [f"parti-{k:04d}" for k in range(1632)],
                             "embedding": list(rng.normal(size=(1632, 8)).astype(np.float32))}), vectors)
    features = tmp_path / "features"
    result = runner.invoke(app, ["decision", "features", "--source", f"parquet:{vectors}", "--out", str(features)])
    assert result.exit_code == 0, result.output
    runs = {}
    for name, extra in (("published", []), ("collected", ["--labels", str(labels)])):
        result = runner.invoke(app, ["decision", "train", "--features", str(features), "--classifier", "logreg",
                                     "--out", str(tmp_path / f"{name}.pth.tar"), "--json", *extra])
        assert result.exit_code == 0, result.output
        runs[name] = json.loads(result.stdout)
    assert runs["collected"]["val_f1_at_half"] == runs["published"]["val_f1_at_half"]
    assert runs["collected"]["train_rows"] == runs["published"]["train_rows"] == 600
    result = runner.invoke(app, ["decision", "train", "--features", str(features), "--labels", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "annotate collect" in result.stderr
