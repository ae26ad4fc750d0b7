"""docs/python-api.md's examples run as written: every ```python block, in order, in one namespace, in a
folder holding the bundled sample's COCO files under the names the docs use."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from gill_eval.sample.make import build_sample

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_blocks_are_found() -> None:
    assert python_blocks("x\n```python\na = 1\n```\n```bash\nno\n```\n```python\nb = 2\n```\n") == ["a = 1\n", "b = 2\n"]


def test_python_api_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sample = build_sample(tmp_path / "sample")  # the COCO files are local (no server needed)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(sample.coco_captions, work / "captions_val2014.json")
    shutil.copytree(sample.coco_images, work / "val2014")
    monkeypatch.chdir(work)
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) == 6
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{DOC.name} block {i + 1}", "exec"), namespace)  # noqa: S102 - our own docs
    # the documented calls wrote under the data root the docs chose, relative to the working folder
    assert (work / "gill-eval-data" / "datasets" / "coco" / "manifest.json").is_file()
    assert namespace["result"]["model"]["name"] == "tiny-sd"


def test_readme_links_every_doc() -> None:
    readme = (DOC.parents[1] / "README.md").read_text(encoding="utf-8")
    assert [p.name for p in sorted(DOC.parent.glob("*.md")) if f"](docs/{p.name})" not in readme] == []
