"""Feature stages in-process: oracles for CLIP features and SD targets, invariance to batching, workers and
sharding, failed rows, memory-mapped reading, the trainer export and the quickstart step."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import open_clip
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image

from gill_eval.errors import ConfigError, InputError
from gill_eval.features.clip_image import ClipImageStage
from gill_eval.exports.clip_embs import write_clip_embs
from gill_eval.quickstart import run_features_quickstart
from gill_eval.store.features import iter_clip_features, iter_sd_text
from gill_eval.features.runner import feature_dir, run_stage
from gill_eval.features.sd_text import SdTextStage
from gill_eval.models.tiny import tiny_clip_dir, tiny_sd_dir
from gill_eval.store import Manifest, dataset_dir, list_shards, read_manifest, write_manifest, write_shard

BAD = {"000000005": "UnidentifiedImageError", "000000013": "truncated", "000000017": "not downloaded"}


def _jpeg(rng: np.random.Generator, mode: str = "RGB") -> bytes:
    h, w = (int(x) for x in rng.integers(20, 90, size=2))
    img = Image.fromarray(rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG" if mode == "RGBA" else "JPEG")
    return buf.getvalue()


def make_dataset(name: str, shards: int = 3, per_shard: int = 14, seed: int = 0) -> list[str]:
    """A prepared dataset with image and example shards, including a corrupt, a truncated and a failed
    download; greyscale and RGBA images too. Returns the keys in order."""
    rng = np.random.default_rng(seed)
    folder = dataset_dir(name)
    keys: list[str] = []
    for s in range(shards):
        rows: dict[str, list] = {"key": [], "image": [], "status": [], "caption": []}
        for _ in range(per_shard):
            key = f"{len(keys):09d}"
            data: bytes | None = _jpeg(rng, ("RGB", "L", "RGBA")[len(keys) % 3])
            status = "success"
            if key == "000000005":
                data = b"definitely not an image"
            elif key == "000000013":
                data = data[: len(data) // 3]
            elif key == "000000017":
                status, data = "failed_to_download", None
            words = " ".join(f"w{j}" for j in range(int(rng.integers(0, 90))))  # some exceed 77 tokens
            rows["key"].append(key)
            rows["image"].append(data)
            rows["status"].append(status)
            rows["caption"].append(f"A photo of thing {key}. {words}")
            keys.append(key)
        write_shard(pa.table({"key": rows["key"], "image": pa.array(rows["image"], pa.binary()),
                              "status": rows["status"]}), folder / "images" / f"{s:05d}.parquet")
        write_shard(pa.table({"key": rows["key"], "caption": rows["caption"]}),
                    folder / "examples" / f"{s:05d}.parquet")
    write_manifest(folder, Manifest(dataset=name))
    return keys



@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {"clip": tiny_clip_dir(root), "sd": tiny_sd_dir(root)}


def clip_stage(models) -> ClipImageStage:
    return ClipImageStage(pretrained=str(models["clip"]), device="cpu")


def read_all(folder: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in list_shards(folder)])


def read_clip(folder: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    batches = list(iter_clip_features(folder))
    return ([k for b in batches for k in b.keys], np.concatenate([b.ok for b in batches]),
            np.concatenate([b.embeddings for b in batches]))


def run_aside(stage, name: str, dest: Path, **opts) -> Path:
    """Run a stage, then move its output folder to ``dest`` so the next run starts empty."""
    summary = run_stage(stage, name, **{"batch_size": 32, "num_workers": 0, **opts})
    assert summary["complete"] or opts.get("shard")
    shutil.move(str(feature_dir(stage.kind, name)), dest)
    return dest


def test_clip_features_match_open_clip_transform_and_record_failures(models, tmp_path):
    keys = make_dataset("ds")
    stage = clip_stage(models)
    summary = run_stage(stage, "ds", batch_size=8, num_workers=0)
    assert summary["rows"] == len(keys) and summary["failed"] == 3
    got_keys, ok, emb = read_clip(feature_dir("clip", "ds"))
    assert got_keys == keys
    table = read_all(feature_dir("clip", "ds"))
    errors = dict(zip(table["key"].to_pylist(), table["error_message"].to_pylist()))
    for key, fragment in BAD.items():
        assert fragment in errors[key]
    assert sorted(k for k, o in zip(got_keys, ok) if not o) == sorted(BAD)

    # Oracle: open_clip's own full eval transform on PIL images, the model's own encode_image, batch of one.
    model, _, preprocess = open_clip.create_model_and_transforms("local-dir:" + str(models["clip"]))
    model.eval()
    images = read_all(dataset_dir("ds") / "images")["image"].to_pylist()
    with torch.no_grad():
        for i, key in enumerate(keys):
            if key in BAD:
                continue
            want = model.encode_image(preprocess(Image.open(io.BytesIO(images[i]))).unsqueeze(0))[0]
            np.testing.assert_allclose(emb[i], want.numpy(), rtol=1e-4, atol=1e-5)
    assert (feature_dir("clip", "ds") / "manifest.json").is_file()


@pytest.mark.parametrize(("a", "b"), [
    ({"batch_size": 1}, {"batch_size": 32}),
    ({"num_workers": 1}, {"num_workers": 2, "batch_size": 5}),
])
def test_clip_invariant_to_batch_size_and_workers(models, tmp_path, a, b):
    keys = make_dataset("ds")
    stage = clip_stage(models)
    ka, oka, ea = read_clip(run_aside(stage, "ds", tmp_path / "a", **a))
    kb, okb, eb = read_clip(run_aside(stage, "ds", tmp_path / "b", **b))
    assert ka == kb == keys and (oka == okb).all()
    np.testing.assert_allclose(ea, eb, rtol=1e-4, atol=1e-5)


def test_shards_union_equals_unsharded(models, tmp_path):
    keys = make_dataset("ds", shards=5, per_shard=6)
    stage = clip_stage(models)
    whole = run_aside(stage, "ds", tmp_path / "whole")
    first = run_stage(stage, "ds", batch_size=4, num_workers=0, shard="0/2")
    assert not first["complete"] and first["units_run"] == 3
    assert not (feature_dir("clip", "ds") / "manifest.json").exists()
    second = run_stage(stage, "ds", batch_size=4, num_workers=2, shard="1/2")
    assert second["complete"] and second["units_run"] == 2
    k1, ok1, e1 = read_clip(feature_dir("clip", "ds"))
    k0, ok0, e0 = read_clip(whole)
    assert k1 == k0 == keys and (ok1 == ok0).all()
    np.testing.assert_allclose(e1, e0, rtol=1e-4, atol=1e-5)
    again = run_stage(stage, "ds", batch_size=4, num_workers=0)  # everything done: nothing to do
    assert again["units_run"] == 0 and again["complete"]


def test_other_settings_refuse_to_mix(models, tmp_path):
    make_dataset("ds", shards=1, per_shard=3)
    run_stage(clip_stage(models), "ds", batch_size=4, num_workers=0)
    other = ClipImageStage(pretrained=str(tiny_clip_dir(tmp_path, seed=1)), device="cpu")
    with pytest.raises(ConfigError, match="weights_sha256"):
        run_stage(other, "ds", batch_size=4, num_workers=0)


def test_missing_dataset_and_columns_are_input_errors(models):
    with pytest.raises(InputError, match=r"--dataset 'nope': not prepared under .*gill-eval datasets list"):
        run_stage(clip_stage(models), "nope", batch_size=4, num_workers=0)
    folder = dataset_dir("cols")
    write_shard(pa.table({"key": ["a"], "image": pa.array([b"x"], pa.binary())}), folder / "images" / "00000.parquet")
    write_manifest(folder, Manifest(dataset="cols"))
    with pytest.raises(InputError, match=r"00000.parquet: missing column\(s\) status"):
        run_stage(clip_stage(models), "cols", batch_size=4, num_workers=0)


def test_sd_targets_equal_diffusers_pipeline(models, tmp_path):
    keys = make_dataset("ds", shards=2, per_shard=5)
    stage = SdTextStage(str(models["sd"]), device="cpu")
    run_stage(stage, "ds", batch_size=4, num_workers=2)
    batches = list(iter_sd_text(feature_dir("sd-text", "ds")))
    got = dict(zip([k for b in batches for k in b.keys], np.concatenate([b.embeddings for b in batches])))
    assert list(got) == keys
    captions = read_all(dataset_dir("ds") / "examples")["caption"].to_pylist()

    # Oracle: diffusers' own pipeline object, loaded by diffusers from the same saved tiny components.
    pipe = StableDiffusionPipeline.from_pretrained(models["sd"], local_files_only=True)
    tok, enc = pipe.tokenizer, pipe.text_encoder
    long_seen = False
    with torch.no_grad():
        for key, caption in zip(keys, captions):
            ids = tok(caption, padding="max_length", max_length=tok.model_max_length, truncation=True,
                      return_tensors="pt").input_ids
            assert ids.shape == (1, 77)
            n = len(tok(caption).input_ids)
            long_seen |= n > 77
            assert (ids[0, min(n, 77):] == 49407).all() and ids[0, -1] == 49407
            want = enc(ids)[0][0]
            np.testing.assert_allclose(got[key].astype(np.float32), want.numpy(), rtol=2e-3, atol=2e-3)
            via_pipe = pipe.encode_prompt(caption, torch.device("cpu"), 1, False)[0][0]
            np.testing.assert_allclose(got[key].astype(np.float32), via_pipe.numpy(), rtol=2e-3, atol=2e-3)
            # Padding with open_clip's 0 would give different targets at the padded positions.
            zero_pad = open_clip.tokenize([caption])
            if n < 77:
                assert not torch.allclose(enc(zero_pad)[0][0, n:], want[n:], atol=1e-2)
    assert long_seen, "fixture should include a caption longer than 77 tokens (right truncation)"
    assert got[keys[0]].dtype == np.float16 and got[keys[0]].shape == (77, 32)


def test_sd_targets_are_memory_mapped_without_copies(models):
    make_dataset("ds", shards=1, per_shard=6)
    run_stage(SdTextStage(str(models["sd"]), device="cpu"), "ds", batch_size=6, num_workers=0)
    before = pa.total_allocated_bytes()
    [batch] = list(iter_sd_text(feature_dir("sd-text", "ds")))
    assert pa.total_allocated_bytes() - before < 10_000  # keys only; the 6x77x32 float16 values are mapped
    assert not batch.embeddings.flags.owndata and not batch.embeddings.flags.writeable


def test_missing_caption_is_a_failed_row(models):
    folder = dataset_dir("caps")
    write_shard(pa.table({"key": ["a", "b", "c"], "caption": ["one", None, "three"]}),
                folder / "examples" / "00000.parquet")
    write_manifest(folder, Manifest(dataset="caps"))
    stage = SdTextStage(str(models["sd"]), device="cpu")
    summary = run_stage(stage, "caps", batch_size=2, num_workers=0)
    assert summary["failed"] == 1
    batches = list(iter_sd_text(feature_dir("sd-text", "caps")))
    ok = np.concatenate([b.ok for b in batches])
    assert [k for b in batches for k in b.keys] == ["a", "b", "c"] and ok.tolist() == [True, False, True]


def test_export_gill_layout_npy_files(models, tmp_path):
    keys = make_dataset("ds", shards=1, per_shard=4)
    with pytest.raises(InputError, match="features sd-text --dataset ds"):
        write_clip_embs("ds", tmp_path / "out")
    run_stage(SdTextStage(str(models["sd"]), device="cpu"), "ds", batch_size=3, num_workers=0)
    result = write_clip_embs("ds", tmp_path / "out", image_name=lambda k: f"{k}.jpg")
    assert result["written"] == 4 and result["failed"] == 0
    stored = {k: e for b in iter_sd_text(feature_dir("sd-text", "ds")) for k, e in zip(b.keys, b.embeddings)}
    for key in keys:
        arr = np.load(tmp_path / "out" / "clip_embs" / f"{key}.jpg.npy")
        assert arr.dtype == np.float16 and arr.shape == (77, 32)
        np.testing.assert_array_equal(arr, stored[key])
    assert write_clip_embs("ds", tmp_path / "out", image_name=lambda k: f"{k}.jpg")["kept"] == 4

    # A new `prepare` of the dataset (other content, same row-number keys) makes the targets stale.
    old = read_manifest(dataset_dir("ds"))
    write_manifest(dataset_dir("ds"), Manifest(dataset="ds", options={**old.options, "re": "prepared"},
                                               counts=old.counts))
    with pytest.raises(InputError, match="earlier `prepare` of ds"):
        write_clip_embs("ds", tmp_path / "out2")


def test_quickstart_step_computes_both(tmp_path):
    make_dataset("sample", shards=1, per_shard=4)
    result = run_features_quickstart(["sample"])
    assert "not real" in result["models"]
    assert result["sample"]["clip"]["complete"] and result["sample"]["sd-text"]["complete"]
    assert result["sample"]["clip"]["rows"] == result["sample"]["sd-text"]["rows"] == 4


def test_exact_batches_ignore_row_groups_and_sequence_restores_order(tmp_path):
    from gill_eval.features.loader import Prepared, _in_sequence, exact_batches

    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"key": [str(i) for i in range(23)]}), path, row_group_size=7)
    sizes = [t.num_rows for t in exact_batches(path, ["key"], 5)]
    assert sizes == [5, 5, 5, 5, 3]
    assert [k for t in exact_batches(path, ["key"], 5) for k in t["key"].to_pylist()] == [str(i) for i in range(23)]

    items = [Prepared(seq, [str(seq)], [None]) for seq in (1, 0, 3, 2, 4)]
    assert [p.seq for p in _in_sequence(iter(items))] == [0, 1, 2, 3, 4]
    with pytest.raises(RuntimeError, match="lost batch 1"):
        list(_in_sequence(iter([Prepared(0, ["a"], [None]), Prepared(2, ["c"], [None])])))


def test_writer_discards_a_unit_interrupted_midway_and_reports_its_own_errors(tmp_path):
    from gill_eval.features.writer import BackgroundWriter
    from gill_eval.store import UnitOfWork, WorkPlan

    schema = pa.schema([("key", pa.string())])
    unit = UnitOfWork("00000", 0)
    plan = WorkPlan(tmp_path / "out", [unit])
    batch = pa.RecordBatch.from_arrays([pa.array(["a"])], schema=schema)
    with pytest.raises(KeyboardInterrupt), BackgroundWriter(plan, schema, "arrow") as writer:
        writer.begin(unit)
        writer.write(lambda: batch)
        raise KeyboardInterrupt
    assert not plan.is_done(unit) and list((tmp_path / "out").iterdir()) == []

    wrong = pa.RecordBatch.from_arrays([pa.array([1])], names=["key"])
    with pytest.raises(ValueError, match="schema does not match"), BackgroundWriter(plan, schema, "parquet") as writer:
        writer.begin(unit)
        writer.write(lambda: wrong)
        writer.end({"rows": 1})
    assert not plan.is_done(unit) and list((tmp_path / "out").iterdir()) == []


def test_low_precision_tower_gets_inputs_in_its_compute_dtype(models):
    """open_clip's bf16/fp16 cast leaves class/positional embeddings in fp32: the input must follow the
    conv weights (an fp32 input into bf16 convs raised on the GPU), and the result stays close to fp32."""
    full = ClipImageStage(pretrained=str(models["clip"]), precision="fp32")
    low = ClipImageStage(pretrained=str(models["clip"]), precision="bf16")
    assert low.dtype == torch.bfloat16 and low.visual.class_embedding.dtype == torch.float32
    pixels = torch.randint(0, 256, (3, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    side = full.visual.image_size[0] if hasattr(full.visual, "image_size") else 64
    pixels = pixels[:, :side, :side]
    with torch.no_grad():
        a, b = full.forward(pixels), low.forward(pixels)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    assert b.dtype == torch.float32 and bool((cos > 0.99).all()), cos
