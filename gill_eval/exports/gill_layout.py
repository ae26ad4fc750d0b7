"""`gill-eval export gill-layout DIR --split train|val`: prepared CC3M in the official GILL trainer's layout.

The trainer (kohjingyu/gill ``gill/data.py``) reads ``<dataset_dir>/cc3m_<split>.tsv`` with pandas
(``pd.read_csv(path, sep="\\t")``, columns ``caption`` and ``image``), opens
``<image_dir>/cc3m/training/<image>`` (``validation/`` for val) and the Stable Diffusion text targets
``<image_dir>/cc3m/<split folder>/clip_embs/<image>.npy``. The trainer opens each image with PIL, which reads
the format from the bytes, so a file's name only has to match the TSV: each stored image is written as it is
(no re-encode: the val split's FID references stay lossless) under ``<key>.<its format>``, ``.jpg`` for the
train split's JPEGs and ``.png`` for the val split's PNGs. This writes, under DIR, ``datasets/`` and
``data/`` (the trainer's default ``--dataset_dir`` and ``--image_dir``), only the rows whose image
downloaded. The TSV is written with pandas as well, so a caption with quote characters reads back
unchanged. Image files are written atomically and kept on a rerun; the TSV is written last.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from gill_eval.console import track
from gill_eval.datasets.cc3m import dataset_name
from gill_eval.errors import InputError
from gill_eval.exports.clip_embs import write_clip_embs
from gill_eval.exports.prepared import paired_rows
from gill_eval.store import (atomic_path, atomic_write_bytes, count_rows, dataset_dir, read_manifest,
                             verify_manifest)
from gill_eval.store.features import feature_dir
from gill_eval.store.names import check_name

SPLIT_FOLDERS = {"train": "training", "val": "validation"}
_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


def image_file_name(key: str, image: bytes) -> str:
    """``<key>.jpg``, ``<key>.png``, ...: the extension of the format the bytes are in (PIL reads the header)."""
    try:
        with Image.open(io.BytesIO(image)) as im:
            fmt = im.format
    except (OSError, Image.DecompressionBombError) as exc:
        raise InputError(f"image {key}: not a readable image ({exc}); rerun `gill-eval prepare cc3m`") from exc
    return f"{check_name('key', key, 'cc3m example')}.{_EXTENSIONS.get(fmt, str(fmt).lower())}"


def _sd_text_targets(dataset: str, image_dir: Path, names: dict[str, str]) -> dict[str, Any] | None:
    """Write ``clip_embs/<image file>.npy`` from the SD text targets, when `gill-eval features sd-text` ran.

    Returns None when the targets do not exist yet (the export of images and TSV still works; the
    trainer needs the targets, so the command says which feature command to run).
    """
    if not (feature_dir("sd-text", dataset) / "manifest.json").is_file():
        return None
    return write_clip_embs(dataset, image_dir, image_name=names.get)


def export_gill_layout(out_dir: Path, split: str) -> dict[str, Any]:
    """Write the TSV and image files for one split; returns what was written."""
    name = dataset_name(split)
    folder = dataset_dir(name)
    verify_manifest(folder, read_manifest(folder), f"rerun `gill-eval prepare cc3m --split {split}` to repair it")
    image_dir = out_dir / "data" / "cc3m" / SPLIT_FOLDERS[split]
    tsv = out_dir / "datasets" / f"cc3m_{split}.tsv"
    captions: list[str] = []
    names: dict[str, str] = {}
    skipped = 0
    for key, caption, image, status in track(paired_rows(folder), f"exporting {name}", total=count_rows(folder / "examples")):
        if status != "success" or image is None:
            skipped += 1
            continue
        file_name = image_file_name(key, image)
        if not (image_dir / file_name).is_file():
            atomic_write_bytes(image_dir / file_name, image)
        captions.append(caption)
        names[key] = file_name
    targets = _sd_text_targets(name, image_dir, names)
    with atomic_path(tsv) as tmp:
        pd.DataFrame({"caption": captions, "image": list(names.values())}).to_csv(tmp, sep="\t", index=False, lineterminator="\n")
    return {
        "dataset": name,
        "tsv": str(tsv),
        "image_dir": str(image_dir),
        "rows": len(names),
        "skipped_without_image": skipped,
        "clip_embs_written": targets,
        "trainer_flags": f"--dataset_dir {out_dir / 'datasets'} --image_dir {out_dir / 'data'}",
    }
