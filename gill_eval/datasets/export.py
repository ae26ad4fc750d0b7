"""`gill-eval export gill-layout DIR --split train|val`: prepared CC3M in the official GILL trainer's layout.

The trainer (kohjingyu/gill ``gill/data.py``) reads ``<dataset_dir>/cc3m_<split>.tsv`` with pandas
(``pd.read_csv(path, sep="\\t")``, columns ``caption`` and ``image``), opens
``<image_dir>/cc3m/training/<image>`` (``validation/`` for val) and the Stable Diffusion text targets
``<image_dir>/cc3m/<split folder>/clip_embs/<image>.npy``. This writes, under DIR, ``datasets/`` and
``data/`` (the trainer's default ``--dataset_dir`` and ``--image_dir``), only the rows whose image
downloaded. The TSV is written with pandas as well, so a caption with quote characters reads back
unchanged. Image files are written atomically and kept on a rerun; the TSV is written last.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from gill_eval.console import track
from gill_eval.datasets.cc3m import dataset_name
from gill_eval.errors import InputError
from gill_eval.store import (atomic_path, atomic_write_bytes, count_rows, dataset_dir, iter_batches, read_manifest,
                             verify_manifest)

SPLIT_FOLDERS = {"train": "training", "val": "validation"}


def _paired_rows(folder: Path) -> Iterator[tuple[str, str, bytes | None, str]]:
    """(key, caption, image bytes, status), walking examples and images together (both sorted by key)."""
    examples = iter_batches(folder / "examples", columns=["key", "caption"])
    images = iter_batches(folder / "images", columns=["key", "image", "status"])
    pending: list[tuple[str, bytes | None, str]] = []
    for batch in examples:
        for key, caption in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
            if not pending:
                nxt = next(images, None)
                if nxt is None:
                    raise InputError(f"{folder}/images: fewer rows than examples; rerun `gill-eval prepare cc3m`")
                pending = list(zip(*(c.to_pylist() for c in nxt.columns)))[::-1]
            image_key, image, status = pending.pop()
            if image_key != key:
                raise InputError(f"{folder}: example {key} and image {image_key} out of step; rerun prepare with --overwrite")
            yield key, caption, image, status


def _sd_text_targets(dataset: str, image_dir: Path) -> dict[str, Any] | None:
    """Write ``clip_embs/<key>.jpg.npy`` from the SD text targets, when `gill-eval features sd-text` ran.

    Returns None when the targets do not exist yet (the export of images and TSV still works; the
    trainer needs the targets, so the command says which feature command to run).
    """
    from gill_eval.features.export import write_clip_embs
    from gill_eval.features.runner import feature_dir

    if not (feature_dir("sd-text", dataset) / "manifest.json").is_file():
        return None
    return write_clip_embs(dataset, image_dir, image_name=lambda key: f"{key}.jpg")


def export_gill_layout(out_dir: Path, split: str) -> dict[str, Any]:
    """Write the TSV and image files for one split; returns what was written."""
    name = dataset_name(split)
    folder = dataset_dir(name)
    verify_manifest(folder, read_manifest(folder), f"rerun `gill-eval prepare cc3m --split {split}` to repair it")
    image_dir = out_dir / "data" / "cc3m" / SPLIT_FOLDERS[split]
    tsv = out_dir / "datasets" / f"cc3m_{split}.tsv"
    captions: list[str] = []
    names: list[str] = []
    skipped = 0
    for key, caption, image, status in track(_paired_rows(folder), f"exporting {name}", total=count_rows(folder / "examples")):
        if status != "success" or image is None:
            skipped += 1
            continue
        file_name = f"{key}.jpg"
        if not (image_dir / file_name).is_file():
            atomic_write_bytes(image_dir / file_name, image)
        captions.append(caption)
        names.append(file_name)
    targets = _sd_text_targets(name, image_dir)
    with atomic_path(tsv) as tmp:
        pd.DataFrame({"caption": captions, "image": names}).to_csv(tmp, sep="\t", index=False, lineterminator="\n")
    return {
        "dataset": name,
        "tsv": str(tsv),
        "image_dir": str(image_dir),
        "rows": len(names),
        "skipped_without_image": skipped,
        "clip_embs_written": targets,
        "trainer_flags": f"--dataset_dir {out_dir / 'datasets'} --image_dir {out_dir / 'data'}",
    }
