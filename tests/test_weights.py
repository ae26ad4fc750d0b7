"""Offline-first weight resolution: staging, records, offline failures, and the real loaders."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from gill_eval.errors import OfflineError
from gill_eval.models import weights
from gill_eval.models.tiny import tiny_sd_dir

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty standard caches (HF_HOME, TORCH_HOME) in a temp folder."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _stage_in_hf_cache(src: Path, hf_home: Path, repo_id: str) -> Path:
    """Lay ``src`` out as huggingface_hub's cache does (refs/main -> snapshots/<commit>)."""
    commit = "0" * 40
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    shutil.copytree(src, snapshot, ignore=shutil.ignore_patterns(".complete"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_offline_missing_weights_fail_fast_and_write_nothing(empty_caches, monkeypatch):
    monkeypatch.setenv("GILL_EVAL_OFFLINE", "1")
    cache = weights.cache_root()
    with pytest.raises(OfflineError, match=r"'sd15-text'.*gill-eval models fetch sd15-text"):
        weights.load_sd_text_encoder(SD15)
    with pytest.raises(OfflineError, match=r"'clip-vit-l-14'.*gill-eval models fetch clip-vit-l-14"):
        weights.load_open_clip("ViT-L-14", "openai")
    with pytest.raises(OfflineError, match="gill-eval models fetch lpips-alex"):
        weights.fetch(["lpips-alex"])
    assert _files(empty_caches) == [] and _files(cache) == []
    assert not any(row["staged"] for row in weights.staged())


@pytest.mark.parametrize(("gill", "hf", "expected"), [
    (None, None, False), ("1", None, True), (None, "1", True), ("0", "false", False), ("true", "0", True),
])
def test_offline_env_switches(monkeypatch, gill, hf, expected):
    for var, value in (("GILL_EVAL_OFFLINE", gill), ("HF_HUB_OFFLINE", hf)):
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, value)
    assert weights.is_offline() is expected


def test_hub_cache_snapshot_loads_offline_and_fetch_records_sha256(empty_caches, monkeypatch):
    snapshot = _stage_in_hf_cache(tiny_sd_dir(), empty_caches / "hf", SD15)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert weights.is_offline()
    tok, enc = weights.load_sd_text_encoder(SD15)
    tok2, enc2 = weights.load_sd_text_encoder(str(snapshot))
    ids = tok(["a red bus"], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(enc(ids)[0], enc2(ids)[0])
    rows = {r["name"]: r for r in weights.staged()}
    assert rows["sd15-text"]["staged"] and not rows["sd15-text"]["recorded"]

    [record] = weights.fetch(["sd15-text"])  # already staged: no download, just the checksums
    expected = {
        str(p.relative_to(snapshot)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in [snapshot / "model_index.json", snapshot / "text_encoder" / "config.json",
                  snapshot / "text_encoder" / "model.safetensors", *sorted((snapshot / "tokenizer").iterdir())]
    }
    assert {f["path"]: f["sha256"] for f in record["files"]} == expected
    row = {r["name"]: r for r in weights.staged(verify=True)}["sd15-text"]
    assert row["recorded"] and row["verified"] is True and row["sha256"] == record["sha256"]
    (snapshot / "text_encoder" / "config.json").write_text("{}")
    assert {r["name"]: r for r in weights.staged(verify=True)}["sd15-text"]["verified"] is False


def test_sd15_full_pipeline_needs_all_components(empty_caches, monkeypatch):
    _stage_in_hf_cache(tiny_sd_dir(), empty_caches / "hf", SD15)
    monkeypatch.setenv("GILL_EVAL_OFFLINE", "1")
    rows = {r["name"]: r for r in weights.staged()}
    assert rows["sd15-text"]["staged"]
    assert not rows["sd15"]["staged"]  # the tiny folder has no safety checker: not a full SD 1.5 snapshot
    with pytest.raises(OfflineError, match="fetch sd15"):
        weights.load_sd_pipeline(SD15)


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def http_root(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Handler(*a, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_weight_fetch_into_torch_home_with_checksums(empty_caches, http_root, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("GILL_EVAL_OFFLINE", raising=False)
    root, base = http_root
    payload = b"alexnet trunk stand-in" * 1000
    (root / "alex.pth").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    spec = weights.REGISTRY["lpips-alex"]
    good = replace(spec, files=(weights.UrlFile(f"{base}/alex.pth", f"alex-{digest[:8]}.pth", digest[:8]),))
    monkeypatch.setitem(weights.REGISTRY, "lpips-alex", good)
    [record] = weights.fetch(["lpips-alex"])
    target = empty_caches / "torch" / "hub" / "checkpoints" / f"alex-{digest[:8]}.pth"
    assert target.read_bytes() == payload
    assert record["files"] == [{"path": target.name, "sha256": digest, "size": len(payload)}]
    assert weights.resolve("lpips-alex") == target.parent

    bad = replace(spec, files=(weights.UrlFile(f"{base}/alex.pth", "other-00000000.pth", "00000000"),))
    monkeypatch.setitem(weights.REGISTRY, "lpips-alex", bad)
    with pytest.raises(RuntimeError, match="invalid hash value"):
        weights.fetch(["lpips-alex"])
    assert not (target.parent / "other-00000000.pth").exists()


def test_unknown_weight_suggests_close_names():
    with pytest.raises(weights.ConfigError, match="did you mean sd15-text"):
        weights.fetch(["sd15-txt"])
