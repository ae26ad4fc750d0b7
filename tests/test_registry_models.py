"""The model registry: built-ins found through entry points, typed options, clear errors for typos.

None of these tests loads weights: errors must come before any expensive work.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from gill_eval.errors import ConfigError
from gill_eval.models import registry
from gill_eval.models.base import ACCEPTS_IMAGES, GENERATE, RETRIEVE, CapabilityError

BUILTINS = {
    "sd": {GENERATE},
    "tiny-sd": {GENERATE},
    "glide": {GENERATE},
    "tiny-glide": {GENERATE},
    "clip-retrieval": {RETRIEVE},
    "tiny-clip-retrieval": {RETRIEVE},
}


def test_builtins_are_listed_with_capabilities_and_options() -> None:
    rows = {row["name"]: row for row in registry.list_models()}
    for name, capabilities in BUILTINS.items():
        assert rows[name]["error"] is None, rows[name]
        assert set(rows[name]["capabilities"]) == capabilities
        assert rows[name]["description"]
    assert rows["glide"]["installed"] == (importlib.util.find_spec("regex") is not None)  # GLIDE's tokenizer
    assert rows["glide"]["install_hint"] == "pip install 'gill-eval[glide]'"
    sd_options = {o["name"]: o for o in rows["sd"]["options"]}
    assert sd_options["guidance"]["type"] == "float | none"
    assert sd_options["scheduler"]["type"] == "pndm | ddim | none"
    assert sd_options["height"]["default"] == 512
    assert {o["name"]: o["default"] for o in rows["tiny-sd"]["options"]}["height"] == 64


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(ConfigError) as info:
        registry.load_model("tiny-sdd", {})
    message = str(info.value)
    assert "unknown model 'tiny-sdd'" in message
    assert "did you mean 'tiny-sd'" in message
    assert "clip-retrieval" in message  # the known names are listed too
    assert "\n" not in message


def test_unknown_option_names_the_valid_ones_and_suggests() -> None:
    with pytest.raises(ConfigError) as info:
        registry.load_model("sd", {"guidence": "3.0"})
    message = str(info.value)
    assert "no option 'guidence'" in message and "did you mean 'guidance'" in message
    for valid in ("guidance", "steps", "scheduler", "height", "batch_size"):
        assert valid in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("steps", "ten", "expected an integer"),
        ("guidance", "high", "expected a number"),
        ("scheduler", "euler", "expected one of pndm, ddim"),
        ("preset", "paper", "expected one of gill, fid"),
        ("steps", "0", "must be at least 1"),
        ("height", "500", "multiple of 8"),
    ],
)
def test_bad_option_values_are_config_errors(key: str, value: str, expected: str) -> None:
    cls = registry.model_class("sd")
    with pytest.raises(ConfigError) as info:
        registry.build_options(cls, {key: value})
    assert expected in str(info.value)


def test_options_are_converted_by_type() -> None:
    cls = registry.model_class("sd")
    options = registry.build_options(cls, {"guidance": "3", "steps": "12", "scheduler": "ddim", "device": "none"})
    assert options.guidance == 3.0 and isinstance(options.guidance, float)
    assert options.steps == 12 and options.scheduler == "ddim" and options.device is None
    # Typed values (from Python callers) are checked, not converted.
    assert registry.build_options(cls, {"steps": 7}).steps == 7
    with pytest.raises(ConfigError, match="expected int"):
        registry.build_options(cls, {"steps": 7.5})


@pytest.mark.parametrize(("text", "value"), [("true", True), ("Yes", True), ("0", False), ("off", False)])
def test_bool_options(text: str, value: bool) -> None:
    assert registry.convert_value(text, bool) is value


def test_bool_option_rejects_other_words() -> None:
    with pytest.raises(ValueError, match="true or false"):
        registry.convert_value("maybe", bool)


def test_presets_fill_only_what_was_not_given() -> None:
    cls = registry.model_class("sd")
    gill = registry.build_options(cls, {})
    assert (gill.guidance, gill.steps, gill.scheduler) == (7.5, 50, "pndm")
    fid = registry.build_options(cls, {"preset": "fid"})
    assert (fid.guidance, fid.steps, fid.scheduler) == (3.0, 250, "ddim")
    mixed = registry.build_options(cls, {"preset": "fid", "steps": "25"})
    assert (mixed.guidance, mixed.steps, mixed.scheduler) == (3.0, 25, "ddim")


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [(["steps"], "expected KEY=VALUE"), (["=3"], "expected KEY=VALUE"), (["steps=1", "steps=2"], "given twice")],
)
def test_model_opt_pairs_must_be_well_formed(pairs: list[str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        registry.parse_option_pairs(pairs)


def test_model_opt_value_may_contain_equals() -> None:
    assert registry.parse_option_pairs(["weights=/a=b/c", "x= y"]) == {"weights": "/a=b/c", "x": " y"}


def test_glide_without_its_package_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "regex", None)  # as if not installed (find_spec gives None)
    with pytest.raises(ConfigError) as info:
        registry.load_model("glide", {})
    assert str(info.value) == "model 'glide' needs regex, which is not installed: pip install 'gill-eval[glide]'"


def test_sd_rejects_image_contexts_before_loading_anything() -> None:
    from PIL import Image

    cls = registry.model_class("sd")
    with pytest.raises(CapabilityError) as info:
        cls.check_context(["a caption", Image.new("RGB", (8, 8))])
    assert info.value.capability == ACCEPTS_IMAGES
    assert "model 'sd' cannot take images in its context" in str(info.value)
    cls.check_context(["only text", "is fine"])


def test_asking_for_cuda_without_it_is_a_config_error(monkeypatch) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)  # as on a machine without CUDA
    with pytest.raises(ConfigError, match="option device='cuda': CUDA is not available"):
        registry.load_model("tiny-sd", {"device": "cuda"})
