"""`gill-eval features` as real processes: offline failure, kill and resume, torchrun with 2 ranks (gloo)."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from gill_eval.features.clip_image import ClipImageStage
from gill_eval.store.features import iter_clip_features
from gill_eval.features.runner import feature_dir, run_stage
from gill_eval.models.tiny import tiny_clip_dir
from gill_eval.store import Manifest, dataset_dir, write_manifest, write_shard


def _cli(tmp_path: Path) -> Path:
    script = tmp_path / "gill_eval_cli.py"
    script.write_text("from gill_eval.cli import main\nmain()\n")
    return script


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", **extra})
    return env


def _dataset(name: str, shards: int, per_shard: int, size: int = 48) -> list[str]:
    """Random-noise JPEGs (slow to decode when large: gives a kill time to land mid-run)."""
    rng = np.random.default_rng(1)
    keys: list[str] = []
    for s in range(shards):
        rows: dict[str, list] = {"key": [], "image": [], "status": []}
        for _ in range(per_shard):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)).save(buf, format="JPEG")
            keys.append(f"{len(keys):09d}")
            rows["key"].append(keys[-1])
            rows["image"].append(buf.getvalue())
            rows["status"].append("success")
        write_shard(pa.table({"key": rows["key"], "image": pa.array(rows["image"], pa.binary()),
                              "status": rows["status"]}), dataset_dir(name) / "images" / f"{s:05d}.parquet")
        write_shard(pa.table({"key": rows["key"], "caption": [f"caption {k}" for k in rows["key"]]}),
                    dataset_dir(name) / "examples" / f"{s:05d}.parquet")
    write_manifest(dataset_dir(name), Manifest(dataset=name))
    return keys


def _read(folder: Path) -> tuple[list[str], np.ndarray]:
    batches = list(iter_clip_features(folder))
    return [k for b in batches for k in b.keys], np.concatenate([b.embeddings for b in batches])


def _clip_cmd(script: Path, name: str, clip: Path, *extra: str) -> list[str]:
    return [sys.executable, str(script), "--offline", "features", "clip", "--dataset", name, "--pretrained",
            str(clip), "--device", "cpu", "--num-workers", "0", *extra]


def test_offline_with_nothing_staged_fails_fast_and_writes_nothing(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gill_eval.cli import app

    _dataset("ds", shards=1, per_shard=2)
    hf = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(hf))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("GILL_EVAL_OFFLINE", "0")  # restored after the test; --offline sets it to 1
    for stage, weight in (("clip", "clip-vit-l-14"), ("sd-text", "sd15-text")):
        result = CliRunner().invoke(app, ["--offline", "features", stage, "--dataset", "ds", "--device", "cpu"])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and f"gill-eval models fetch {weight}" in lines[0], result.stderr
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert not feature_dir(stage, "ds").exists()
    assert not hf.exists() and not (tmp_path / "torch").exists()


def test_killed_mid_run_then_rerun_equals_uninterrupted(tmp_path):
    keys = _dataset("ds", shards=12, per_shard=6, size=512)
    clip = tiny_clip_dir(tmp_path / "tiny")
    script = _cli(tmp_path)
    done = feature_dir("clip", "ds") / "_done"

    def markers() -> list[Path]:
        return list(done.glob("[0-9]*.json"))  # not the temporaries of markers being written

    proc = subprocess.Popen(_clip_cmd(script, "ds", clip, "--batch-size", "4"), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not markers():
            assert proc.poll() is None, "run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    finished = len(markers())
    assert 1 <= finished < 12, f"kill landed after {finished} of 12 units"
    assert not (feature_dir("clip", "ds") / "manifest.json").exists()

    rerun = subprocess.run(_clip_cmd(script, "ds", clip, "--batch-size", "5", "--json"), env=_env(),
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert '"units_run": ' + str(12 - finished) in rerun.stdout
    got_keys, got = _read(feature_dir("clip", "ds"))
    assert got_keys == keys  # every key exactly once, in order
    assert not [p for p in feature_dir("clip", "ds").iterdir() if p.name.startswith(".tmp-")]

    shutil.move(str(feature_dir("clip", "ds")), tmp_path / "resumed")
    run_stage(ClipImageStage(pretrained=str(clip), device="cpu"), "ds", batch_size=4, num_workers=0)
    want_keys, want = _read(feature_dir("clip", "ds"))
    assert want_keys == keys
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_torchrun_two_ranks_equal_one_process(tmp_path):
    keys = _dataset("ds", shards=5, per_shard=4)
    clip = tiny_clip_dir(tmp_path / "tiny")
    script = _cli(tmp_path)
    run_stage(ClipImageStage(pretrained=str(clip), device="cpu"), "ds", batch_size=3, num_workers=0)
    one_keys, one = _read(feature_dir("clip", "ds"))
    shutil.move(str(feature_dir("clip", "ds")), tmp_path / "single")

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           *_clip_cmd(script, "ds", clip, "--batch-size", "3", "--json")[1:]]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count('"shard": "0/2"') == 1 and proc.stdout.count('"shard": "1/2"') == 1
    assert proc.stdout.count('"units_run": 3') == 1 and proc.stdout.count('"units_run": 2') == 1
    two_keys, two = _read(feature_dir("clip", "ds"))
    assert two_keys == one_keys == keys
    np.testing.assert_allclose(two, one, rtol=1e-4, atol=1e-5)
    assert (feature_dir("clip", "ds") / "manifest.json").is_file()  # rank 0 after the barrier
