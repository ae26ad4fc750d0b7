"""SD targets in the layout GILL's trainer reads: ``<dir>/clip_embs/<image>.npy`` (float16, 77x768).

Called by ``gill-eval export gill-layout`` (``gill_eval.exports.gill_layout``). One ``np.save`` file per caption is what the official loader
expects (it reads ``clip_embs/{image}.npy`` and keeps ``[:77]``); each file is written atomically and an
existing file is kept, so an interrupted export resumes.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gill_eval.console import make_progress
from gill_eval.errors import InputError
from gill_eval.store import atomic_write_bytes, count_rows, dataset_dir, read_manifest
from gill_eval.store.features import feature_dir, iter_sd_text, require_complete
from gill_eval.store.names import check_name


def write_clip_embs(dataset: str, out_dir: str | Path, image_name: Callable[[str], str | None] = str) -> dict[str, Any]:
    """Write ``out_dir/clip_embs/{image_name(key)}.npy`` for every successful SD target of ``dataset``.

    ``image_name`` maps an example key to the image file name used in the trainer's TSV (the ``image``
    column), or to None for a key the TSV leaves out (no file then); the default uses the key itself.
    Returns ``{folder, written, kept, failed, skipped}``: ``kept`` counts files already present, ``failed``
    the examples without a target (listed in the feature shards), ``skipped`` those ``image_name`` left out.
    """
    src = feature_dir("sd-text", dataset)
    require_complete(src, f"gill-eval features sd-text --dataset {dataset}")
    made_from = read_manifest(src).options.get("input_manifest")
    if made_from != read_manifest(dataset_dir(dataset)).content_hash():
        # cc3m keys are row numbers: targets of an earlier prepare would be paired with the new captions.
        raise InputError(f"{src}: the SD targets were computed from an earlier `prepare` of {dataset}; "
                         f"remove that folder and rerun `gill-eval features sd-text --dataset {dataset}`")
    folder = Path(out_dir) / "clip_embs"
    folder.mkdir(parents=True, exist_ok=True)
    written = kept = failed = skipped = 0
    total = count_rows(dataset_dir(dataset) / "examples")
    with make_progress() as progress:
        task = progress.add_task("export clip_embs", total=total)
        for batch in iter_sd_text(src):
            for key, ok, emb in zip(batch.keys, batch.ok, batch.embeddings):
                progress.advance(task)
                if not ok:
                    failed += 1
                    continue
                name = image_name(key)
                if name is None:
                    skipped += 1
                    continue
                target = folder / f"{check_name('image name', name, f'datasets/{dataset}: key {key!r}')}.npy"
                if target.exists():
                    kept += 1
                    continue
                buf = io.BytesIO()
                np.save(buf, np.ascontiguousarray(emb))
                atomic_write_bytes(target, buf.getvalue())
                written += 1
    return {"folder": str(folder), "written": written, "kept": kept, "failed": failed, "skipped": skipped}
