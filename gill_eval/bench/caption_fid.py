"""Text-to-image FID on a caption set (shared by ``coco-fid`` and ``cc3m-fid``).

One image per caption (per seed) from the caption text alone; one FID per seed, of that seed's generated
set against the reference statistics of the dataset's available images (torch-fidelity
``inception-v3-compat``). Models whose images come from SD run the paper's FID sampler (docs/protocols.md).

References are the real photos under FID's declared resize (centre square, LANCZOS 256; docs/protocols.md).
A dataset whose images img2dataset letterboxed (``--resize-mode border``: white bars padding every photo
to a square) is refused: the bars would stay in every reference and inflate FID.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from PIL import Image

from gill_eval.bench.data import PreparedDataset
from gill_eval.bench.generation import GenerationJob
from gill_eval.errors import ConfigError, InputError

CONTEXT = "captions"


class CaptionFidBenchmark:
    """The first ``num`` captions of a prepared caption manifest (in manifest order) and its image set."""

    kind = "fid"

    def __init__(self, name: str, table: str, dataset: PreparedDataset, id_column: str, caption_column: str,
                 num: int | None, reference_rule: str) -> None:
        if num is not None and num < 2:
            raise ConfigError(f"--num {num}: FID needs at least 2 images")
        self.name, self.table, self.dataset = name, table, dataset
        self.id_column, self.caption_column, self.num = id_column, caption_column, num
        self.reference_rule = reference_rule

    @cached_property
    def captions(self) -> dict[str, str]:
        rows = self.dataset.examples(columns=[self.id_column, self.caption_column])
        if self.num is not None:
            if self.num > len(rows):
                raise InputError(f"{self.dataset.folder}: --num {self.num} but the manifest holds {len(rows)} captions")
            rows = rows[: self.num]
        return {str(r[self.id_column]): str(r[self.caption_column]).strip() for r in rows}

    def coverage(self) -> dict[str, Any]:
        return {"examples_total": len(self.captions), "examples_eligible": len(self.captions),
                "eligibility": f"first {len(self.captions)} captions of the prepared manifest",
                "reference": self.reference_rule}

    def needs_images(self, context: str) -> bool:
        return False

    def reference_keys(self) -> list[str]:
        check_unpadded(self.dataset)
        return sorted(self.dataset.available())

    def job(self, context: str) -> GenerationJob:
        if context != CONTEXT:
            raise ConfigError(f"{self.name}: context {context!r}; only {CONTEXT!r} exists")

        def build(ids: list[str]) -> list:
            return [[self.captions[i]] for i in ids]

        return GenerationJob(self.name, CONTEXT, list(self.captions), build, self.dataset.content_hash,
                             {"num": len(self.captions), "reference": self.reference_rule})

    def references(self, example_ids: Sequence[str]) -> dict[str, Image.Image]:
        raise NotImplementedError("FID compares sets, not pairs")


def check_unpadded(dataset: PreparedDataset) -> None:
    """Refuse reference images that were padded to a square when prepared (img2dataset's border mode)."""
    options = dataset.manifest.options
    if options.get("resize_mode") == "border" and options.get("store", "img2dataset") == "img2dataset":
        split = f" --split {options['split']}" if "split" in options else ""
        raise InputError(f"{dataset.folder}: images were stored letterboxed (img2dataset --resize-mode border), not "
                         f"as the real photos FID needs; rerun `gill-eval prepare {dataset.name.split('-')[0]}{split} "
                         "--overwrite` (its default --store keeps the photo's centre square)")


def coco_fid(num: int | None = 30000, dataset: PreparedDataset | None = None) -> CaptionFidBenchmark:
    """``bench coco-fid`` (Table 8): COCO val2014 caption manifest vs. the full val2014 image set."""
    return CaptionFidBenchmark("coco-fid", "table8", dataset or PreparedDataset("coco"), "caption_id", "caption", num,
                               "all available val2014 images")


def cc3m_fid(num: int | None = None, dataset: PreparedDataset | None = None) -> CaptionFidBenchmark:
    """``bench cc3m-fid`` (Tables 3-4): CC3M validation captions vs. the validation images that downloaded."""
    return CaptionFidBenchmark("cc3m-fid", "table3", dataset or PreparedDataset("cc3m-val"), "key", "caption", num,
                               "all available CC3M validation images")
