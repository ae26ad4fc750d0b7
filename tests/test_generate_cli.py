"""`gill-eval generate` and `gill-eval models` through the real CLI app (in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gill_eval.cli import app

runner = CliRunner()



def test_generate_with_tiny_sd_default_weights_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default tiny weights are built on first use; the image equals the library call's."""
    monkeypatch.setenv("GILL_EVAL_OFFLINE", "")  # restored after the test; --offline sets it in-process
    from gill_eval.models.registry import load_model
    from gill_eval.models.tiny import tiny_sd_dir

    out = tmp_path / "cat.png"
    result = runner.invoke(app, ["--offline", "generate", "--model", "tiny-sd", "--model-opt", "steps=2",
                                 "--prompt", "a cat", "--prompt", "on a mat", "--seed", "5",
                                 "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["model"]["name"] == "tiny-sd" and summary["model"]["options"]["steps"] == 2
    assert summary["generator_seed"] == 5 and summary["stats"]["truncated_contexts"] == 0
    written = np.asarray(Image.open(out))
    assert written.shape == (64, 64, 3)

    library = load_model("tiny-sd", {"weights": str(tiny_sd_dir()), "steps": "2"})
    assert library.weight_hashes() == summary["model"]["weights"]
    expected = np.asarray(library.generate([["a cat on a mat"]], [5])[0])
    assert np.array_equal(written, expected)
    assert not list(tmp_path.glob(".tmp-*"))  # the atomic write left nothing behind


def test_image_context_with_sd_fails_before_loading_and_keeps_existing_output(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "in.png")
    out = tmp_path / "out.png"
    out.write_bytes(b"previous result")
    result = runner.invoke(app, ["generate", "-m", "sd", "-p", "a caption", "-i", str(tmp_path / "in.png"),
                                 "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: model 'sd' cannot take images in its context: "
                                     "it is text-only, and the context holds images")
    assert out.read_bytes() == b"previous result"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "tiny-sd", "--out", "x.png"], "error: generate: give at least one --prompt or --image"),
        (["-m", "tiny-sd", "-p", "a", "--out", "x.gif2"], "error: --out x.gif2: unknown image extension '.gif2'"),
        (["-m", "tiny-sd", "-p", "a", "--model-opt", "steps", "--out", "x.png"],
         "error: --model-opt 'steps': expected KEY=VALUE"),
        (["-m", "tiny-sd", "-p", "a", "--model-opt", "stepz=2", "--out", "x.png"],
         "error: model 'tiny-sd' has no option 'stepz' (did you mean 'steps'?)"),
        (["-m", "stable-diffusion", "-p", "a", "--out", "x.png"], "error: unknown model 'stable-diffusion'"),
    ],
)
def test_generate_errors_are_one_line(args: list[str], message: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["generate", *args])
    assert result.exit_code == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert not (tmp_path / "x.png").exists()


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    result = runner.invoke(app, ["generate", "-m", "tiny-sd", "-i", str(bad), "--out", str(tmp_path / "o.png")])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: --image {bad}: not a readable image")


def test_models_list_shows_models_and_weights() -> None:
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    for name in ("sd", "tiny-sd", "glide", "clip-retrieval", "tiny-clip-retrieval", "sd15", "clip-vit-l-14"):
        assert name in result.stdout
    rows = json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)
    assert {m["name"] for m in rows["models"]} >= {"sd", "tiny-sd", "glide", "clip-retrieval", "tiny-clip-retrieval"}
    assert {w["name"] for w in rows["weights"]} >= {"sd15", "clip-vit-l-14"}


def test_models_fetch_offline_fails_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GILL_EVAL_OFFLINE", "")  # restored after the test; --offline sets it in-process
    result = runner.invoke(app, ["--offline", "models", "fetch", "sd15"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: weight 'sd15' is not staged and offline mode is on")
    assert runner.invoke(app, ["models", "fetch"]).stderr.startswith("error: name the weights to fetch, or --all")
    both = runner.invoke(app, ["models", "fetch", "sd15", "--all"])
    assert both.stderr.startswith("error: give weight names or --all, not both")


def test_models_show_lists_the_options() -> None:
    shown = runner.invoke(app, ["models", "show", "sd", "--json"])
    assert shown.exit_code == 0, shown.output
    options = {o["name"]: o for o in json.loads(shown.stdout)["options"]}
    assert options["preset"]["default"] == "gill" and options["preset"]["type"] == "gill | fid"
    assert "guidance" in runner.invoke(app, ["models", "show", "tiny-sd"]).stdout
    typo = runner.invoke(app, ["models", "show", "clip-retreival"])
    assert typo.exit_code == 2 and "did you mean 'clip-retrieval'" in typo.stderr
