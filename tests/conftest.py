"""Shared test fixtures. Tests never touch the network beyond 127.0.0.1 and never a model hub."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def _isolated_roots(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own data root and cache root, so nothing leaks into the user's folders."""
    base = tmp_path_factory.mktemp("roots")
    monkeypatch.setenv("GILL_EVAL_DATA", str(base / "data"))
    monkeypatch.setenv("GILL_EVAL_CACHE", str(base / "cache"))
    from gill_eval.store import root

    monkeypatch.setattr(root, "_override", None)
    # The CLI's --offline sets GILL_EVAL_OFFLINE for the process; register the variable so that
    # teardown removes it again and one test's --offline never leaks into the next.
    monkeypatch.setenv("GILL_EVAL_OFFLINE", "0")
    monkeypatch.delenv("GILL_EVAL_OFFLINE")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: one intra-op thread avoids OpenMP spin-waiting (speed only)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def shared_dir() -> Path:
    """The ``../shared`` folder beside the checkout; tests that need it skip with a reason when absent."""
    if not (SHARED / "data" / "partiprompts").is_dir():
        pytest.skip(f"{SHARED}/data/partiprompts is absent (needs ../shared beside the checkout)")
    return SHARED
