"""``gill-eval doctor``: does this environment give the networks what GILL's environment gave them?

One line per check (docs/protocols.md, "Environments"): the library versions the protocol assumes, then,
given the official-environment fixtures (``tests/fixtures/official_env`` of a source checkout, made by
``tools/official_env/make_fixtures.py`` under GILL's pins), gill-eval's own arrays against them: GILL's
224 squash, FID's resize, the CLIP processor's pixel values (CLIP similarity and GILL), and SD's prompt
token ids. Exit 1 when a check fails.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from packaging.version import Version
from PIL import Image

from gill_eval.console import emit_json

DEFAULT_FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "official_env"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | fail | skip
    detail: str


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def version_checks() -> list[Check]:
    pillow = Version(metadata.version("pillow"))
    transformers = Version(metadata.version("transformers"))
    return [
        Check("pillow", "ok" if pillow < Version("13") else "fail",
              f"Pillow {pillow}" + ("" if pillow < Version("13") else
                                    ": resamples differently from GILL's 9.4; pip install 'pillow<13'")),
        Check("transformers", "ok" if transformers >= Version("5") else "fail",
              f"transformers {transformers}" + ("" if transformers >= Version("5") else
                                                ": gill-eval needs transformers>=5; pip install -U transformers")),
    ]


def _image_check(name: str, fixtures: Path, meta: dict, matches: Callable[[str, Image.Image], bool]) -> Check:
    """``matches(fixture name, opened image)`` for every fixture image, summarised on one line."""
    bad = [n for n in sorted(meta) if not matches(n, Image.open(io.BytesIO((fixtures / "images" / n).read_bytes())))]
    return Check(name, "fail" if bad else "ok", f"{len(meta) - len(bad)}/{len(meta)} fixture images equal GILL's "
                 "environment" + (f"; differ: {', '.join(bad)}" if bad else ""))


def fixture_checks(fixtures: Path) -> list[Check]:
    from transformers import CLIPImageProcessorPil

    from gill_eval.clip_text import gill_clip_text
    from gill_eval.metrics.fid import fid_uint8
    from gill_eval.models.tiny import build_clip_tokenizer
    from gill_eval.resizes import plain_rgb, squash_224

    meta = json.loads((fixtures / "images.json").read_text(encoding="utf-8"))
    processor = CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224},
                                      image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))

    def pixels(image: Image.Image) -> str:
        return _sha(processor(images=[image], return_tensors="np").pixel_values[0].astype(np.float32))

    with np.load(fixtures / "images.npz") as z:
        squashed = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("vist224/")}
    checks = [
        _image_check("gill-224-squash", fixtures, meta, lambda n, im: np.array_equal(np.asarray(squash_224(im)), squashed[n])),
        _image_check("fid-resize", fixtures, meta, lambda n, im: _sha(fid_uint8(im)) == meta[n]["sha256_fid256"]),
        _image_check("clip-similarity-pixels", fixtures, meta,
                     lambda n, im: pixels(plain_rgb(im)) == meta[n]["sha256_clip_similarity_pixel_values"]),
        _image_check("gill-pixels", fixtures, meta,
                     lambda n, im: pixels(squash_224(im)) == meta[n]["sha256_gill_pixel_values"]),
    ]
    rows = json.loads((fixtures / "tokens.json").read_text(encoding="utf-8"))["rows"]
    ids = build_clip_tokenizer()([gill_clip_text(r["prompt"]) for r in rows], padding="max_length", max_length=77,
                                 truncation=True).input_ids
    bad = [r["prompt"] for r, got in zip(rows, ids, strict=True) if got[: got.index(49407) + 1] != r["ids"]]
    checks.append(Check("sd-prompt-tokens", "fail" if bad else "ok",
                        f"{len(rows) - len(bad)}/{len(rows)} prompts get GILL's SD token ids"
                        + (f"; first differing: {bad[0]!r}" if bad else "")))
    return checks


def run_checks(fixtures: Path | None) -> list[Check]:
    checks = version_checks()
    folder = fixtures or DEFAULT_FIXTURES
    if not (folder / "images.json").is_file():
        return checks + [Check("fixtures", "skip", f"{folder}: no official-environment fixtures; pass --fixtures "
                                                   "tests/fixtures/official_env of a gill-eval source checkout")]
    return checks + fixture_checks(folder)


def doctor(
    fixtures: Annotated[Optional[Path], typer.Option(
        "--fixtures", help="Official-environment fixtures (default: tests/fixtures/official_env of this checkout).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Check this environment against GILL's: library versions, then image inputs and SD token ids."""
    checks = run_checks(fixtures)
    if json_out:
        emit_json({"ok": all(c.status != "fail" for c in checks), "checks": [asdict(c) for c in checks]})
    else:
        for c in checks:
            typer.echo(f"{c.status:4} {c.name}: {c.detail}")
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)
