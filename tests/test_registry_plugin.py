"""A third-party model registered through an entry point is found, listed and runs, without a fork.

The package lives in ``tests/plugin_pkg`` (its pyproject declares the entry point). Instead of a pip
install, each test writes what an install would: the module plus a ``.dist-info`` folder whose
``entry_points.txt`` is generated from that pyproject, in a temporary folder put on the path. The
discovery itself is the real ``importlib.metadata`` path, in-process and in a ``gill-eval`` subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gill_eval.errors import ConfigError
from gill_eval.models import registry
from gill_eval.models.base import GENERATE, example_seed

PLUGIN = Path(__file__).parent / "plugin_pkg"
GILL_EVAL = Path(sys.executable).with_name("gill-eval")


def install_plugin(target: Path, extra_entry_points: dict[str, str] | None = None) -> Path:
    """Lay out the plugin as an installed distribution in ``target`` (a folder for sys.path)."""
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    groups = {**project["entry-points"]}
    groups["gill_eval.models"] = {**groups["gill_eval.models"], **(extra_entry_points or {})}
    target.mkdir(parents=True, exist_ok=True)
    for module in PLUGIN.glob("*.py"):
        shutil.copy(module, target)
    info = target / "gill_eval_demo_plugin-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in points.items()) for group, points in groups.items()))
    return target


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = install_plugin(tmp_path / "site")
    monkeypatch.syspath_prepend(str(path))
    yield path
    sys.modules.pop("gill_eval_demo_plugin", None)


def expected_noise(seed: int, size: int) -> np.ndarray:
    """Oracle: the plugin's documented output, computed here from the seed alone."""
    noise = torch.rand((size, size, 3), generator=torch.Generator().manual_seed(seed))
    return (noise * 255).clamp(0, 255).to(torch.uint8).numpy()


def test_plugin_is_found_and_listed(plugin_path: Path) -> None:
    assert "demo-noise" in registry.model_names()
    row = {r["name"]: r for r in registry.list_models()}["demo-noise"]
    assert row["capabilities"] == ["accepts_images", GENERATE]
    assert row["entry_point"] == "gill_eval_demo_plugin:NoiseModel"
    assert row["installed"] and row["error"] is None
    assert [o["name"] for o in row["options"]] == ["size", "scale", "grey", "batch_size"]


def test_plugin_runs_with_typed_options_and_per_example_seeds(plugin_path: Path) -> None:
    model = registry.load_model("demo-noise", {"size": "12", "grey": "false"})
    assert model.options.size == 12 and model.options.grey is False
    seeds = [example_seed(0, "a"), example_seed(0, "b")]
    out = model.generate([["a caption"], [Image.new("RGB", (4, 4)), "then text"]], seeds)
    for image, seed in zip(out, seeds):
        assert np.array_equal(np.asarray(image), expected_noise(seed, 12))
    assert model.last_run_stats == {"items": [["text"], ["image", "text"]]}
    assert model.fingerprint() == {"name": "demo-noise", "options": {"size": 12, "scale": 1.0, "grey": False},
                                   "weights": {}}


def test_plugin_option_errors_are_clear(plugin_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no option 'sise' \(did you mean 'size'\?\); valid options: size, scale"):
        registry.load_model("demo-noise", {"sise": "3"})
    with pytest.raises(ConfigError, match="size=0: must be at least 1"):
        registry.load_model("demo-noise", {"size": "0"})


def test_broken_plugins_are_reported_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = install_plugin(tmp_path / "site", {"demo-missing": "no_such_module_xyz:Model",
                                              "demo-misnamed": "gill_eval_demo_plugin:NoiseModel"})
    monkeypatch.syspath_prepend(str(path))
    rows = {r["name"]: r for r in registry.list_models()}
    assert rows["demo-noise"]["error"] is None
    assert "failed to import: ModuleNotFoundError" in rows["demo-missing"]["error"]
    assert "declares name = 'demo-noise'" in rows["demo-misnamed"]["error"]
    with pytest.raises(ConfigError, match="model 'demo-missing' .* failed to import"):
        registry.load_model("demo-missing", {})
    sys.modules.pop("gill_eval_demo_plugin", None)


def _run(args: list[str], plugin: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([str(GILL_EVAL), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_gill_eval_lists_and_runs_the_plugin_in_a_subprocess(tmp_path: Path) -> None:
    plugin = install_plugin(tmp_path / "site")
    listed = _run(["models", "list", "--json"], plugin, tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = {row["name"]: row for row in json.loads(listed.stdout)["models"]}
    assert names["demo-noise"]["capabilities"] == ["accepts_images", "generate"]
    assert {"sd", "tiny-sd", "glide", "clip-retrieval", "tiny-clip-retrieval"} <= set(names)

    Image.new("RGB", (10, 10), (200, 10, 10)).save(tmp_path / "ctx.png")
    out = tmp_path / "out" / "noise.png"
    ran = _run(["generate", "--model", "demo-noise", "--model-opt", "size=20", "--prompt", "first caption",
                "--image", str(tmp_path / "ctx.png"), "--prompt", "second caption",
                "--seed", "7", "--example-id", "story-3", "--out", str(out), "--json"], plugin, tmp_path)
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    # Oracle for the benchmark seed rule: sha256("seed:example id"), first 8 bytes, 63 bits.
    seed = int.from_bytes(hashlib.sha256(b"7:story-3").digest()[:8], "big") & ((1 << 63) - 1)
    assert summary["generator_seed"] == seed
    assert summary["stats"]["items"] == [["text", "image", "text"]]  # the order given on the command line
    assert summary["context"] == ["first caption", str(tmp_path / "ctx.png"), "second caption"]
    assert np.array_equal(np.asarray(Image.open(out)), expected_noise(seed, 20))
