"""Decision features are keyed by the prompts as encoded, clean-up included (docs/protocols.md, Table 6).

The real PartiPrompts files hold one prompt with a leading space (" A sloth in a go kart..."), which the
notebook's ``line.strip()`` drops. Features computed from prompts cleaned another way (the case of a cache
written before the clean-up existed) must be computed again, never reused. The source here records what it
is asked to encode, so the test sees exactly when ``compute`` encodes and with which prompt texts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gill_eval.datasets import partiprompts as pp
from gill_eval.decision import annotations
from gill_eval.decision.features import fingerprint_hash
from gill_eval.decision.featureset import FeatureSet, compute
from gill_eval.store import read_manifest, write_manifest
from conftest import bundled_partiprompts

SLOTH_LINE = 406  # 1-based line of " A sloth in a go kart..." in each of the four files


class RecordingSource:
    """A feature source whose vectors depend on each prompt's exact text, recording every encode call."""

    spec = "recording"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": "recording", "version": 1}

    def encode(self, keys, prompts) -> np.ndarray:
        self.calls.append(list(prompts))
        return np.array([[len(p), sum(map(ord, p)) % 9973, p[:1] == " "] for p in prompts], dtype=np.float32)


@pytest.fixture
def parti(tmp_path: Path) -> Path:
    """Eight prompts of the real files plus the one with a leading space, prepared unverified."""
    src = tmp_path / "src"
    src.mkdir()
    for name in pp.FILE_NAMES:
        lines = (bundled_partiprompts() / name).read_text(encoding="utf-8").splitlines()
        (src / name).write_text("\n".join(lines[:9] + [lines[SLOTH_LINE - 1]]) + "\n", encoding="utf-8")
    from gill_eval.datasets.partiprompts_prepare import prepare
    from gill_eval.store import dataset_dir

    prepare(str(src), verify=False)
    return dataset_dir("partiprompts")


def _sloth(prompts: list[str]) -> str:
    return next(p for p in prompts if "sloth" in p)


def test_changing_the_clean_up_recomputes(parti: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, out = RecordingSource(), tmp_path / "features"
    compute(source, out, parti)
    assert len(source.calls) == 1 and _sloth(source.calls[0]).startswith("A sloth")
    compute(source, out, parti)
    assert len(source.calls) == 1  # same prompts: up to date
    cleaned = FeatureSet.read(out).vectors

    monkeypatch.setattr(annotations, "clean_prompt", lambda prompt: prompt)  # another clean-up: none
    compute(source, out, parti)
    assert len(source.calls) == 2 and _sloth(source.calls[1]).startswith(" A sloth")
    raw = FeatureSet.read(out).vectors
    differs = np.flatnonzero((raw != cleaned).any(axis=1))
    assert [source.calls[1][i] for i in differs] == [_sloth(source.calls[1])]  # only that prompt's row

    monkeypatch.undo()
    compute(source, out, parti)
    assert len(source.calls) == 3
    np.testing.assert_array_equal(FeatureSet.read(out).vectors, cleaned)


def test_a_cache_that_does_not_record_its_prompts_is_not_reused(parti: Path, tmp_path: Path) -> None:
    """A folder as written before the prompts were recorded (request = source, fingerprint and prompt count
    only), holding features of the uncleaned prompts, is computed again."""
    source, out = RecordingSource(), tmp_path / "features"
    compute(source, out, parti)
    cleaned = FeatureSet.read(out).vectors
    manifest = read_manifest(out)
    fingerprint = source.fingerprint()
    old = {"source": source.spec, "fingerprint": fingerprint, "fingerprint_hash": fingerprint_hash(fingerprint),
           "prompts": manifest.options["prompts"]}
    manifest.options = {**old, "request": fingerprint_hash(old), "dim": manifest.options["dim"]}
    write_manifest(out, manifest)
    compute(source, out, parti)
    assert len(source.calls) == 2  # not taken as up to date
    np.testing.assert_array_equal(FeatureSet.read(out).vectors, cleaned)
    assert "prompts_sha256" in read_manifest(out).options
