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


BUNDLED_PARTIPROMPTS = REPO / "gill_eval" / "sample" / "files" / "partiprompts"


def bundled_partiprompts() -> Path:
    """The package's bundled copies of the four PartiPrompts files, each checked against its pinned sha256
    (so tests read exactly the published files, and need no ``../shared`` beside the checkout)."""
    from gill_eval.datasets.partiprompts import pinned_files
    from gill_eval.store import sha256_file

    for pin in pinned_files().values():
        digest = sha256_file(BUNDLED_PARTIPROMPTS / pin.name)
        assert digest == pin.sha256, f"{BUNDLED_PARTIPROMPTS / pin.name}: sha256 {digest} is not the pinned {pin.sha256}"
    return BUNDLED_PARTIPROMPTS


@pytest.fixture(scope="session")
def partiprompts_dir() -> Path:
    """The bundled PartiPrompts files (sha256-checked)."""
    return bundled_partiprompts()


# ------------------------------------------------------------------ skips: only for missing optional extras
# A test may skip only when an optional extra is not installed, and its reason then names the install
# command ("pip install ..."). Under CI (CI=true) any other skip fails the run, so a fresh clone runs every
# test that its installed extras allow.
_BAD_SKIPS: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if "pip install" not in reason:
            _BAD_SKIPS.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _BAD_SKIPS and os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        print("\nskipped without an optional-extra reason (name the `pip install ...` that enables it, or fix):")
        for line in _BAD_SKIPS:
            print(f"  {line}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
