"""GLIDE needs the optional glide-text2im package (not on PyPI); without it these tests skip.

The message a user gets when selecting ``glide`` without the package is tested in
test_registry_models.py, which runs everywhere.
"""

from __future__ import annotations

import pytest

pytest.importorskip(
    "glide_text2im", reason="glide-text2im is not installed (pip install git+https://github.com/openai/glide-text2im)"
)

from gill_eval.errors import OfflineError  # noqa: E402
from gill_eval.models.registry import load_model  # noqa: E402


def test_offline_without_checkpoints_fails_before_building(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GILL_EVAL_OFFLINE", "1")
    with pytest.raises(OfflineError, match="GLIDE checkpoint 'base' is not staged at .*base.pt"):
        load_model("glide", {"device": "cpu"})


def test_glide_options_follow_the_paper() -> None:
    from gill_eval.models.registry import build_options, model_class

    options = build_options(model_class("glide"), {})
    assert (options.guidance, options.base_steps, options.upsample_steps) == (3.0, "100", "fast27")
