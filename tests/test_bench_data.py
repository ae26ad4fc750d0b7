"""Fixture datasets in the prepared layout (examples/ + images/ shards + manifest), and context tests.

Other bench/report tests import ``build_fixture_data`` from here.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from gill_eval.bench.contexts import parse_rounds, parse_seeds, parse_vist_context, visdial_text, vist_context
from gill_eval.errors import ConfigError
from gill_eval.store import Manifest, dataset_dir, write_manifest, write_shard


def _png(seed: int, size=(40, 32), squash: bool = False) -> bytes:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)  # smooth-ish images, not pure noise
    im = Image.fromarray(base).resize(size, Image.Resampling.BILINEAR)
    if squash:  # as `prepare vist` stores photos (--store gill-224): 224x224, aspect not kept
        im = im.resize((224, 224), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _images_table(keys: list[str], failed: set[str] = frozenset(), squash: bool = False) -> pa.Table:
    rows = []
    w, h = (224, 224) if squash else (40, 32)
    for i, key in enumerate(keys):
        ok = key not in failed
        rows.append({"key": key, "image": _png(1000 + i, squash=squash) if ok else None,
                     "status": "success" if ok else "failed_to_download",
                     "error_message": "" if ok else "HTTP 404", "width": w if ok else None, "height": h if ok else None})
    return pa.Table.from_pylist(rows)


def _write(name: str, examples: pa.Table, images: pa.Table, options: dict | None = None) -> None:
    folder = dataset_dir(name)
    write_shard(examples, folder / "examples" / "00000.parquet")
    write_shard(images, folder / "images" / "00000.parquet")
    write_manifest(folder, Manifest(dataset=name, options={"fixture": True, **(options or {})},
                                    counts={"examples": examples.num_rows}))


def build_fixture_data(n_stories: int = 6) -> None:
    """VIST (one story has a missing photo), VisDial, COCO and CC3M fixtures under the test's data root."""
    stories, photos = [], []
    for s in range(n_stories + 1):
        ids = [f"{100 + s}{p}" for p in range(5)]
        if s == 1:
            ids[4] = "1004"  # two stories end on the same photo: results are keyed by story, not photo
        photos += ids
        stories.append({"story_id": f"5{s:03d}", "album_id": f"a{s}", "photo_ids": ids,
                         "texts": [f"story {s} sentence {p} about the [female] at the beach ." for p in range(5)]})
    missing = {f"{100 + n_stories}2"}  # the last story lacks a context image: not eligible
    _write("vist", pa.Table.from_pylist(stories), _images_table(sorted(set(photos)), missing, squash=True),
           {"store": "gill-224"})
    dialogs = [{"image_id": 185000 + d, "caption": f"caption {d}",
                "questions": [f"is there a thing {r}?" for r in range(10)], "answers": [f"yes {r}" for r in range(10)]}
               for d in range(4)]
    _write("visdial", pa.Table.from_pylist(dialogs), _images_table([str(185000 + d) for d in range(4)]))
    captions = [{"caption_id": 900 + c, "image_id": c % 4, "caption": f"A photo of thing {c} \n"} for c in range(4)]
    _write("coco", pa.Table.from_pylist(captions), _images_table([str(i) for i in range(5)]))
    cc3m = [{"key": f"{c:09d}", "caption": f"the player at a computer screen {c} ."} for c in range(5)]
    _write("cc3m-val", pa.Table.from_pylist(cc3m), _images_table([f"{c:09d}" for c in range(5)]))


def test_vist_contexts_follow_the_grammar():
    caps = [f"c{i}" for i in range(1, 6)]
    imgs = {p: f"img{p + 1}" for p in range(5)}
    assert vist_context(parse_vist_context("1c"), caps, imgs) == ["c5"]
    assert vist_context(parse_vist_context("5c"), caps, imgs) == caps
    assert vist_context(parse_vist_context("5c4i"), caps, imgs) == ["c1", "img1", "c2", "img2", "c3", "img3", "c4", "img4", "c5"]
    assert vist_context(parse_vist_context("2c1i"), caps, imgs) == ["c4", "img4", "c5"]
    assert vist_context(parse_vist_context("1c2i"), caps, imgs) == ["img3", "img4", "c5"]
    for bad in ("6c", "5c5i", "c5", "5ci"):
        with pytest.raises(ConfigError):
            parse_vist_context(bad)


def test_visdial_text_and_option_parsing():
    text = visdial_text(["is it red?", "how many ??"], ["yes ", "two"], 2)  # as prepared: "?" already there
    assert text == "Q: is it red?\nA: yes \nQ: how many ??\nA: two"
    assert parse_rounds("10,1,5") == [1, 5, 10] and parse_seeds("0-2,7") == [0, 1, 2, 7]
    with pytest.raises(ConfigError):
        parse_rounds("0,11")
