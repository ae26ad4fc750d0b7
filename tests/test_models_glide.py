"""GLIDE through glide-text2im (optional, not on PyPI): a tiny random GLIDE built from the package's own
defaults at small widths, loaded back through the code path of ``glide``; without the package these tests
skip, saying how to install it.

The message a user gets when selecting ``glide`` without the package is tested in
test_registry_models.py, which runs everywhere.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip(
    "glide_text2im",
    reason="glide-text2im is not installed (pip install git+https://github.com/openai/glide-text2im; "
           "here: pip install ../shared/wheels/glide_text2im-0.0.0-py3-none-any.whl)",
)

from gill_eval.errors import ConfigError, InputError, OfflineError  # noqa: E402
from gill_eval.models import weights  # noqa: E402
from gill_eval.models.base import CapabilityError  # noqa: E402
from gill_eval.models.registry import build_options, load_model, model_class  # noqa: E402
from gill_eval.models.tiny import TINY_GLIDE_OVERRIDES, tiny_glide_dir  # noqa: E402

FAST = {"base_steps": "2", "upsample_steps": "2", "device": "cpu"}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_glide_dir(tmp_path_factory.mktemp("tiny-glide"))


@pytest.fixture(scope="module")
def tiny(tiny_folder: Path):  # noqa: ANN201 - a TinyGlideModel
    return load_model("tiny-glide", {**FAST, "weights": str(tiny_folder)})


def _pixels(images) -> list[np.ndarray]:  # noqa: ANN001
    return [np.asarray(im) for im in images]


def _equal_up_to_batch_rounding(got: np.ndarray, want: np.ndarray) -> None:
    """A batched call equals single calls up to float rounding of batched kernels: at most 1 in a few pixels."""
    diff = np.abs(np.asarray(got).astype(int) - np.asarray(want).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_glide_options_follow_the_text2im_notebook() -> None:
    options = build_options(model_class("glide"), {})
    assert (options.guidance, options.base_steps, options.upsample_steps, options.upsample_temp) == (
        3.0, "100", "fast27", 0.997)
    assert options.weights is None and options.use_fp16 is None  # the staged `glide` weights; fp16 on GPU only
    tiny = build_options(model_class("tiny-glide"), {})
    assert (tiny.guidance, tiny.base_steps, tiny.upsample_steps, tiny.upsample_temp) == (3.0, "100", "fast27", 0.997)


def test_tiny_glide_is_the_packages_architecture_at_small_widths(tiny, tiny_folder: Path) -> None:
    from glide_text2im.model_creation import model_and_diffusion_defaults, model_and_diffusion_defaults_upsampler

    assert json.loads((tiny_folder / "glide_config.json").read_text()) == TINY_GLIDE_OVERRIDES
    for config, defaults, name in ((tiny.base_config, model_and_diffusion_defaults(), "base"),
                                   (tiny.up_config, model_and_diffusion_defaults_upsampler(), "upsample")):
        changed = {k for k in defaults if config[k] != defaults[k]}
        assert changed == set(TINY_GLIDE_OVERRIDES[name]) | {"use_fp16", "timestep_respacing"}
        saved = torch.load(tiny_folder / f"{name}.pt", weights_only=True)
        loaded = (tiny.base if name == "base" else tiny.up).state_dict()
        assert saved.keys() == loaded.keys() and all(torch.equal(loaded[k], v) for k, v in saved.items())
    assert tiny.base_config["image_size"] == 64 and tiny.base_config["text_ctx"] == 128
    # glide-text2im leaves two text embeddings uninitialised (torch.empty): the tiny build must set every
    # weight, so two builds from one seed are equal and hold no NaN (NaN weights made all-black images).
    again = tiny_glide_dir(tiny_folder.parent / "again")
    for name in ("base", "upsample"):
        first = torch.load(tiny_folder / f"{name}.pt", weights_only=True)
        second = torch.load(again / f"{name}.pt", weights_only=True)
        assert all(torch.isfinite(v).all() for v in first.values() if v.is_floating_point())
        assert all(torch.equal(first[k], second[k]) for k in first)
    assert tiny.base_diffusion.num_timesteps == 2 and tiny.up_diffusion.num_timesteps == 2
    assert sum(p.numel() for p in tiny.base.parameters()) < 10_000_000


def test_same_seed_same_image_other_seed_other_image_batch_equals_singles(tiny) -> None:
    contexts = [["a red bus"], ["a red bus"]]
    batch = _pixels(tiny.generate(contexts, [7, 9]))
    assert all(p.shape == (128, 128, 3) and p.dtype == np.uint8 for p in batch)
    singles = [_pixels(tiny.generate([c], [s]))[0] for c, s in zip(contexts, [7, 9], strict=True)]
    for got, want in zip(batch, singles, strict=True):
        _equal_up_to_batch_rounding(got, want)
    np.testing.assert_array_equal(_pixels(tiny.generate([["a red bus"]], [7]))[0], singles[0])  # same call: exact
    assert np.abs(batch[0].astype(int) - batch[1].astype(int)).mean() > 1  # same text, other seed
    other_text = _pixels(tiny.generate([["a cat on a mat"]], [7]))[0]
    assert np.abs(other_text.astype(int) - singles[0].astype(int)).mean() > 0.01  # the text reaches the image
    assert tiny.last_run_stats["truncated"] == [False]


def test_sampling_equals_the_text2im_notebook_with_the_items_generator(tiny, monkeypatch) -> None:
    """Oracle: the package's own notebook recipe (guided ``model_fn``, ``p_sample_loop``, then the
    upsampler's ``ddim_sample_loop``) with every draw of the global RNG replaced by the item's generator."""
    import glide_text2im.gaussian_diffusion as gd

    prompt, seed, guidance = "a small boat on a lake", 11, 3.0
    gen = torch.Generator().manual_seed(seed)
    base, diffusion = tiny.base, tiny.base_diffusion

    def tokens(model, text: str, ctx: int) -> tuple[list[int], list[bool]]:  # noqa: ANN001
        return model.tokenizer.padded_tokens_and_mask(model.tokenizer.encode(text), ctx)

    cond, cond_mask = tokens(base, prompt, 128)
    uncond, uncond_mask = tokens(base, "", 128)
    kwargs = {"tokens": torch.tensor([cond, uncond]), "mask": torch.tensor([cond_mask, uncond_mask])}

    def model_fn(x_t, ts, **kw):  # noqa: ANN001, ANN202 - the notebook's classifier-free guidance
        half = x_t[: len(x_t) // 2]
        out = base(torch.cat([half, half]), ts, **kw)
        eps, rest = out[:, :3], out[:, 3:]
        c, u = torch.split(eps, len(eps) // 2)
        g = u + guidance * (c - u)
        return torch.cat([torch.cat([g, g]), rest], dim=1)

    def item_randn_like(x):  # noqa: ANN001, ANN202 - one draw per item, both halves share it
        draw = torch.randn((3, 64, 64), generator=gen)
        return torch.stack([draw, draw])

    first = torch.randn((3, 64, 64), generator=gen)
    with torch.no_grad():
        base.del_cache()
        with monkeypatch.context() as patch:
            patch.setattr(gd.th, "randn_like", item_randn_like)
            low = diffusion.p_sample_loop(model_fn, (2, 3, 64, 64), noise=torch.stack([first, first]),
                                          clip_denoised=True, model_kwargs=kwargs, device=torch.device("cpu"),
                                          progress=False)[:1]
        base.del_cache()
        up_tokens, up_mask = tokens(tiny.up, prompt, 128)
        noise = torch.randn((3, 128, 128), generator=gen)[None] * 0.997
        up = tiny.up_diffusion.ddim_sample_loop(
            tiny.up, (1, 3, 128, 128), noise=noise, clip_denoised=True, device=torch.device("cpu"), progress=False,
            model_kwargs={"low_res": ((low + 1) * 127.5).round() / 127.5 - 1,
                          "tokens": torch.tensor([up_tokens]), "mask": torch.tensor([up_mask])})
    want = ((up + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    got = _pixels(tiny.generate([[prompt]], [seed]))[0]
    np.testing.assert_array_equal(got, want)


def test_text_only_and_the_default_tiny_folder(tiny, tiny_folder: Path) -> None:
    from PIL import Image

    with pytest.raises(CapabilityError, match="tiny-glide"):
        tiny.generate([["a caption", Image.new("RGB", (8, 8))]], [0])
    assert not tiny.can("accepts_images")
    same = load_model("glide", {**FAST, "weights": str(tiny_folder)})  # `glide` itself on the tiny folder
    np.testing.assert_array_equal(_pixels(same.generate([["a red bus"]], [3]))[0],
                                  _pixels(tiny.generate([["a red bus"]], [3]))[0])
    assert same.weight_hashes() == tiny.weight_hashes()
    assert tiny.fingerprint()["options"]["base_steps"] == "2"


def test_offline_without_staged_weights_fails_before_building(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GILL_EVAL_OFFLINE", "1")
    with pytest.raises(OfflineError, match=r"weight 'glide' is not staged.*gill-eval models fetch glide"):
        load_model("glide", {"device": "cpu"})


def test_bad_weights_folders_name_the_file(tmp_path: Path, tiny_folder: Path) -> None:
    with pytest.raises(ConfigError, match="neither a folder nor a registered weight"):
        load_model("glide", {"weights": str(tmp_path / "nope"), "device": "cpu"})
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: no base.pt or upsample.pt"):
        load_model("glide", {"weights": str(tmp_path / "empty"), "device": "cpu"})
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("base.pt", "upsample.pt"):
        (bad / name).write_bytes((tiny_folder / name).read_bytes())
    (bad / "glide_config.json").write_text(json.dumps({"base": {"num_chanels": 32}}))
    with pytest.raises(InputError, match=r"glide_config.json: base: unknown setting\(s\) num_chanels"):
        load_model("glide", {"weights": str(bad), "device": "cpu"})
    (bad / "glide_config.json").write_text(json.dumps({**TINY_GLIDE_OVERRIDES, "base": {
        **TINY_GLIDE_OVERRIDES["base"], "num_channels": 64}}))
    with pytest.raises(InputError, match=r"base.pt: does not fit the base model"):
        load_model("glide", {"weights": str(bad), "device": "cpu"})


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # noqa: ANN002
        pass


@pytest.fixture
def served(tmp_path: Path, tiny_folder: Path) -> Iterator[tuple[Path, str]]:
    """The tiny checkpoints on a loopback server, standing in for OpenAI's bucket."""
    root = tmp_path / "www" / "diffusion" / "dec-2021"
    root.mkdir(parents=True)
    for path in tiny_folder.iterdir():
        if not path.name.startswith("."):
            (root / path.name).write_bytes(path.read_bytes())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Quiet(*a, directory=str(tmp_path / "www")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/diffusion/dec-2021"
    server.shutdown()


def test_models_fetch_glide_stages_with_sha256_then_glide_loads_offline(served, tiny, monkeypatch) -> None:
    from typer.testing import CliRunner

    from gill_eval.cli import app

    root, base_url = served
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # conftest's default; downloads reach 127.0.0.1 only
    spec = weights.REGISTRY["glide"]
    assert [f.url for f in spec.files] == [
        "https://openaipublic.blob.core.windows.net/diffusion/dec-2021/base.pt",
        "https://openaipublic.blob.core.windows.net/diffusion/dec-2021/upsample.pt",
    ]  # glide-text2im's download.py MODEL_PATHS
    from glide_text2im.download import MODEL_PATHS

    assert [f.url for f in spec.files] == [MODEL_PATHS["base"], MODEL_PATHS["upsample"]]
    # The official folder has no glide_config.json; the stand-in serves one so that `glide` builds tiny models.
    files = tuple(weights.UrlFile(f"{base_url}/{name}", name) for name in ("base.pt", "upsample.pt", "glide_config.json"))
    monkeypatch.setitem(weights.REGISTRY, "glide", replace(spec, files=files))
    result = CliRunner().invoke(app, ["models", "fetch", "glide", "--json"])
    assert result.exit_code == 0, result.output
    [record] = json.loads(result.stdout)
    want = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.iterdir()}
    assert {f["path"]: f["sha256"] for f in record["files"]} == want
    staged = Path(record["path"])
    assert staged == weights.cache_root() / "weights" / "files" / "glide"

    monkeypatch.setenv("GILL_EVAL_OFFLINE", "1")
    model = load_model("glide", FAST)  # default weights: the registered, now staged, `glide`
    assert model.weight_hashes() == {"glide": record["sha256"]}
    np.testing.assert_array_equal(_pixels(model.generate([["a red bus"]], [5]))[0],
                                  _pixels(tiny.generate([["a red bus"]], [5]))[0])


@pytest.mark.slow
def test_tiny_glide_rows_in_tables_1_and_8(tiny_folder: Path, tiny, tmp_path: Path, tmp_path_factory,
                                           monkeypatch) -> None:
    """The quickstart's GLIDE runs (Table 1 and Table 8; Table 2 runs the same code) through the pipeline
    on fixture data: every row generated, and a stored image equal to the model's own output for that
    example's seed."""
    from gill_eval.bench.data import decode_image
    from gill_eval.bench.vist import VistBenchmark
    from gill_eval.models.base import example_seed
    from gill_eval.pipeline import Pipeline, execute
    from gill_eval.store import iter_rows
    from test_bench_data import build_fixture_data

    monkeypatch.setenv("GILL_EVAL_CACHE", str(tmp_path_factory.getbasetemp() / "bench-shared-cache"))  # tiny scorers
    build_fixture_data(n_stories=2)
    model = {"name": "tiny-glide", "options": {**FAST, "weights": str(tiny_folder)}}
    pipeline = Pipeline(path=Path("glide.toml"), title="tiny GLIDE", report=tmp_path / "glide.md", seeds=[0],
                        models={"tiny-glide": model}, scorers="tiny", device="cpu", batch_size=4,
                        runs=[{"benchmark": "vist", "models": ["tiny-glide"], "contexts": ["1c", "5c4i"]},
                              {"benchmark": "coco-fid", "models": ["tiny-glide"]}])
    results, report = execute(pipeline)
    by = {(r["benchmark"], r["context"]): r for r in results}
    assert by[("vist", "5c4i")]["status"] == "unsupported"  # text only
    for key in (("vist", "1c"), ("coco-fid", "captions")):
        assert by[key]["status"] == "ok" and by[key]["failures"]["count"] == 0
        assert by[key]["model"]["fingerprint"]["weights"] == tiny.weight_hashes()
    assert by[("vist", "1c")]["metrics"]["clip_similarity"]["n_evaluated"] == 2
    assert by[("coco-fid", "captions")]["metrics"]["fid"]["n_evaluated"] == 4
    text = report.read_text()
    for table in ("Table 1.", "Table 8"):
        section = text.split(table, 1)[1].split("\n### ", 1)[0]
        assert "| GLIDE (paper) |" in section and "| tiny-glide |" in section, table
    gen_dir = Path(by[("vist", "1c")]["generation"]["dir"])
    [row] = [r for r in iter_rows(sorted(gen_dir.glob("*.parquet"))) if r["example_id"] == "5001"]
    context = VistBenchmark().job("1c").build_contexts(["5001"])[0]
    want = tiny.generate([context], [example_seed(0, "5001")])[0]
    _equal_up_to_batch_rounding(np.asarray(decode_image(row["image"], "row")), np.asarray(want))  # batch of 4
