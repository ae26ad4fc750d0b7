"""GLIDE: gill-eval's own implementation proven equal to OpenAI's glide-text2im, and the ``glide`` /
``tiny-glide`` registry entries built on it.

The oracle is tests/fixtures/glide (its README.md): outputs of glide-text2im itself on tiny random weights
stored under the package's parameter names: token ids and masks, respaced schedules, one forward pass of
each network, and a whole text2im sample with every noise draw recorded. Nothing here imports the package.
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

from gill_eval.errors import ConfigError, InputError, OfflineError
from gill_eval.models import weights
from gill_eval.models.base import CapabilityError, cpu_generator
from gill_eval.models.glide.config import BASE_DEFAULTS, UPSAMPLE_DEFAULTS, build
from gill_eval.models.glide.diffusion import SpacedDiffusion, space_timesteps
from gill_eval.models.glide.sampler import (guided_base_states, last, quantise, to_uint8, tokenize,
                                            upsample_states)
from gill_eval.models.glide.tokenizer import glide_tokenizer
from gill_eval.models.registry import build_options, load_model, model_class
from gill_eval.models.tiny import TINY_GLIDE_OVERRIDES, tiny_glide_dir

FIXTURES = Path(__file__).parent / "fixtures" / "glide"
PACKAGE_BPE = Path(__file__).resolve().parents[1] / "gill_eval" / "models" / "glide" / "bpe"
FAST = {"base_steps": "2", "upsample_steps": "2", "device": "cpu"}
#: The README's tolerance on network outputs and sampler states (fp32, another order of operations).
ATOL = 1e-5
CPU = torch.device("cpu")


def _fixture(name: str):  # noqa: ANN202
    return torch.load(FIXTURES / name, weights_only=True)


@pytest.fixture(scope="module")
def settings() -> dict:
    return json.loads((FIXTURES / "config.json").read_text())


@pytest.fixture(scope="module")
def networks(settings: dict) -> dict:
    """Both networks and schedules from the fixture's settings, holding the fixture's weights (fp32)."""
    built = {}
    for name in ("base", "upsample"):
        model, diffusion = build(settings[name])
        model.load_state_dict(_fixture(f"{name}.pt"))
        built[name] = (model, diffusion)
    return built


def test_fixture_files_match_their_sha256sums() -> None:
    """The copied fixtures and the shipped vocabulary are the files the fixtures were computed from."""
    for line in (FIXTURES / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        path = PACKAGE_BPE / Path(name).name if name.startswith("tokenizer/") else FIXTURES / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, name


def test_token_ids_and_masks_equal_the_package() -> None:
    tokenizer = glide_tokenizer()
    recorded = json.loads((FIXTURES / "tokens.json").read_text())
    assert len(recorded) >= 8 and tokenizer.n_vocab == 50257 and tokenizer.end_token == 50256
    for prompt, want in recorded.items():
        ids = tokenizer.encode(prompt)
        assert ids == want["encode"], prompt
        assert tokenizer.padded_tokens_and_mask(ids, 128) == (want["padded"], want["mask"]), prompt
    assert len(recorded[" ".join(["word"] * 200)]["encode"]) == 200  # the long prompt is cut to 128 ...
    tokens, mask, truncated = tokenize(tokenizer, [" ".join(["word"] * 200), "a"], 128, CPU)
    assert truncated == [True, False] and mask.sum(1).tolist() == [128, 1]  # ... and counted as truncated


def test_respaced_schedules_equal_the_package() -> None:
    recorded = json.loads((FIXTURES / "schedule.json").read_text())
    for spec, steps in recorded["use_timesteps"].items():
        assert sorted(space_timesteps(1000, spec)) == steps, spec
    for name, schedule, spec in (("base", "squaredcos_cap_v2", "100"), ("upsample", "linear", "fast27")):
        diffusion = SpacedDiffusion.create(schedule, 1000, spec)
        np.testing.assert_allclose(diffusion.betas, recorded[f"{name}_respaced_betas"], rtol=1e-12, atol=0)
        assert list(diffusion.timestep_map) == recorded[f"timestep_map_{name}"]
    with pytest.raises(ConfigError, match="cannot hold"):
        space_timesteps(1000, "400,400,400")  # a section of 334 steps cannot hold 400
    with pytest.raises(ConfigError, match="expected step counts"):
        space_timesteps(1000, "fast")


def test_parameter_names_and_shapes_are_the_packages(networks: dict) -> None:
    for name in ("base", "upsample"):
        mine = networks[name][0].state_dict()
        theirs = _fixture(f"{name}.pt")
        assert list(mine) == list(theirs), name  # same names, same order
        assert all(mine[k].shape == v.shape for k, v in theirs.items()), name


def test_defaults_are_the_packages_and_the_fixture_changed_only_widths(settings: dict) -> None:
    """The fixture's settings are the package's defaults with small widths: every other setting equals
    ours, so the released checkpoints' architecture is what the defaults build."""
    widths = {"num_channels", "num_res_blocks", "channel_mult", "num_head_channels", "attention_resolutions",
              "xf_width", "xf_layers", "xf_heads", "timestep_respacing", "use_fp16"}
    for name, defaults in (("base", BASE_DEFAULTS), ("upsample", UPSAMPLE_DEFAULTS)):
        assert set(settings[name]) == set(defaults)
        changed = {k for k in defaults if settings[name][k] != defaults[k]}
        assert changed <= widths | ({"image_size"} if name == "upsample" else set()), (name, changed)
    assert (UPSAMPLE_DEFAULTS["image_size"], UPSAMPLE_DEFAULTS["noise_schedule"]) == (256, "linear")
    assert (BASE_DEFAULTS["image_size"], BASE_DEFAULTS["noise_schedule"]) == (64, "squaredcos_cap_v2")


def test_forward_passes_equal_the_package(networks: dict) -> None:
    recorded = _fixture("forward.pt")
    for name in ("base", "upsample"):
        model = networks[name][0]
        given = recorded[name]
        with torch.no_grad():
            out = model(given["x"], given["t"], tokens=given["tokens"], mask=given["mask"],
                        low_res=given.get("low_res"))
        assert out.shape == given["out"].shape and given["out"].abs().max() > 1e-2
        assert (out - given["out"]).abs().max() < ATOL, name
        # the text encoded once and passed in gives the same output as tokens re-encoded (the sampler's shortcut)
        with torch.no_grad():
            text = model.encode_text(given["tokens"], given["mask"])
            again = model(given["x"], given["t"], low_res=given.get("low_res"), text=text)
        torch.testing.assert_close(again, out, rtol=0, atol=0)


def test_fp16_keeps_the_packages_precision_split(settings: dict) -> None:
    """glide-text2im's fp16: the torso's convolutions and the text tower's Linear layers and token embedding
    in fp16; time/FiLM MLPs, norms, text position/padding tables and the output head in fp32."""
    model, _ = build(settings["base"])
    model.load_state_dict(_fixture("base.pt"))
    model.convert_to_fp16()
    half = {k for k, v in model.state_dict().items() if v.dtype == torch.float16}
    for key in ("input_blocks.0.0.weight", "input_blocks.1.0.in_layers.2.weight", "middle_block.1.qkv.weight",
                "middle_block.1.encoder_kv.bias", "output_blocks.0.0.skip_connection.weight",
                "transformer.resblocks.0.attn.c_qkv.weight", "transformer.resblocks.1.mlp.c_proj.bias",
                "token_embedding.weight", "transformer_proj.weight"):
        assert key in half, key
    for key in ("positional_embedding", "padding_embedding", "time_embed.0.weight", "out.2.weight",
                "input_blocks.1.0.emb_layers.1.weight", "input_blocks.1.0.in_layers.0.weight", "final_ln.weight",
                "transformer.resblocks.0.ln_1.weight", "middle_block.1.norm.weight"):
        assert key not in half, key
    given = _fixture("forward.pt")["base"]
    with torch.no_grad():
        out = model(given["x"][2:3], given["t"][2:3], tokens=given["tokens"][2:3], mask=given["mask"][2:3])
    assert out.dtype == torch.float32
    assert (out - given["out"][2:3]).abs().max() < 1e-3  # fp16 activations: near, not equal


@pytest.fixture(scope="module")
def replay(networks: dict) -> dict:
    """The recorded text2im sample replayed: the base loop fed the recorded noise draws, the upsampler
    started from the recorded low-res input and initial noise."""
    recorded = _fixture("loop.pt")
    (base, base_diffusion), (up, up_diffusion) = networks["base"], networks["upsample"]
    tokenizer = glide_tokenizer()
    draws = iter([n.float() for n in recorded["base_step_noises"]])
    with torch.no_grad():
        tokens, mask, _ = tokenize(tokenizer, [recorded["prompt"], ""], 128, CPU)
        base_states = list(guided_base_states(base, base_diffusion, base.encode_text(tokens, mask),
                                              recorded["guidance"], recorded["base_init_noise"].float(),
                                              lambda: next(draws)))
        up_tokens, up_mask, _ = tokenize(tokenizer, [recorded["prompt"]], 128, CPU)
        up_states = list(upsample_states(up, up_diffusion, up.encode_text(up_tokens, up_mask),
                                         recorded["upsample_low_res"], recorded["upsample_init_noise"]))
    assert next(draws, None) is None  # one draw per step, the last step's included
    return {"recorded": recorded, "base": base_states, "up": up_states}


def test_replayed_base_loop_gives_the_recorded_states(replay: dict) -> None:
    recorded, states = replay["recorded"], replay["base"]
    assert len(states) == 100 and recorded["guidance"] == 3.0
    for step, state in recorded["base_every_10th_step"]:
        # the package's state is doubled; only its conditional (first) half is ever read
        assert (states[step] - state[:1]).abs().max() < ATOL, step
    assert (states[-1] - recorded["base_sample"]).abs().max() < ATOL
    torch.testing.assert_close(quantise(states[-1]), recorded["upsample_low_res"], rtol=0, atol=1e-6)


def test_replayed_upsampler_gives_the_recorded_states_and_image(replay: dict) -> None:
    recorded, states = replay["recorded"], replay["up"]
    assert len(states) == 27
    for step, state in recorded["upsample_every_3rd_step"]:
        assert (states[step] - state).abs().max() < ATOL, step
    mine = to_uint8(states[-1]).numpy().astype(int)
    theirs = recorded["image_uint8"].permute(0, 2, 3, 1).numpy().astype(int)
    off = np.abs(mine - theirs)
    # pixels on a rounding boundary may land one level apart; count them
    assert off.max() <= 1 and int((off > 0).sum()) <= 10, (off.max(), int((off > 0).sum()))


def test_glide_options_follow_the_text2im_notebook() -> None:
    options = build_options(model_class("glide"), {})
    assert (options.guidance, options.base_steps, options.upsample_steps, options.upsample_temp) == (
        3.0, "100", "fast27", 0.997)
    assert options.weights is None and options.use_fp16 is None  # the staged `glide` weights; fp16 on GPU only
    tiny = build_options(model_class("tiny-glide"), {})
    assert (tiny.guidance, tiny.base_steps, tiny.upsample_steps, tiny.upsample_temp) == (3.0, "100", "fast27", 0.997)
    assert model_class("glide").requires == ("regex",) and not model_class("glide").missing_requirements()


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


def test_tiny_glide_is_the_default_architecture_at_small_widths(tiny, tiny_folder: Path) -> None:
    assert json.loads((tiny_folder / "glide_config.json").read_text()) == TINY_GLIDE_OVERRIDES
    for config, defaults, name in ((tiny.base_config, BASE_DEFAULTS, "base"),
                                   (tiny.up_config, UPSAMPLE_DEFAULTS, "upsample")):
        changed = {k for k in defaults if config[k] != defaults[k]}
        assert changed == set(TINY_GLIDE_OVERRIDES[name]) | {"use_fp16", "timestep_respacing"}
        saved = torch.load(tiny_folder / f"{name}.pt", weights_only=True)
        loaded = (tiny.base if name == "base" else tiny.up).state_dict()
        assert saved.keys() == loaded.keys() and all(torch.equal(loaded[k], v) for k, v in saved.items())
    assert tiny.base_config["image_size"] == 64 and tiny.base_config["text_ctx"] == 128
    # every weight set (none left zero or unset), and two builds from one seed are equal
    again = tiny_glide_dir(tiny_folder.parent / "again")
    for name in ("base", "upsample"):
        first = torch.load(tiny_folder / f"{name}.pt", weights_only=True)
        second = torch.load(again / f"{name}.pt", weights_only=True)
        assert all(torch.isfinite(v).all() and v.any() for v in first.values() if v.is_floating_point())
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


def test_generate_is_the_recipe_with_the_items_generator(tiny) -> None:
    """The adapter's draws, in order: initial noise, one per base step, the upsampler's noise (x 0.997),
    all from the item's generator; guidance 3.0 against the empty prompt; the 8-bit low-res input."""
    prompt, seed = "a small boat on a lake", 11
    gen = cpu_generator(seed)
    tokenizer = glide_tokenizer()
    with torch.no_grad():
        tokens, mask, _ = tokenize(tokenizer, [prompt, ""], 128, CPU)
        first = torch.randn((3, 64, 64), generator=gen)[None]
        low = last(guided_base_states(tiny.base, tiny.base_diffusion, tiny.base.encode_text(tokens, mask), 3.0,
                                      first, lambda: torch.randn((3, 64, 64), generator=gen)[None]))
        up_tokens, up_mask, _ = tokenize(tokenizer, [prompt], 128, CPU)
        noise = torch.randn((3, 128, 128), generator=gen)[None] * 0.997
        up = last(upsample_states(tiny.up, tiny.up_diffusion, tiny.up.encode_text(up_tokens, up_mask),
                                  quantise(low), noise))
    np.testing.assert_array_equal(_pixels(tiny.generate([[prompt]], [seed]))[0], to_uint8(up)[0].numpy())


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


def test_bad_weights_folders_and_settings_name_the_problem(tmp_path: Path, tiny_folder: Path) -> None:
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
    with pytest.raises(ConfigError, match=r"model 'glide': invalid setting for the base model: timestep respacing"):
        load_model("glide", {"weights": str(tiny_folder), "device": "cpu", "base_steps": "fast"})


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
