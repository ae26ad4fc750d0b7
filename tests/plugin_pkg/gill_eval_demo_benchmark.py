"""A third-party benchmark: generate the image of a COCO caption from the caption alone, scored by CLIP
similarity and LPIPS against that caption's photo.

It exists to show (and test) that a package outside gill-eval adds a benchmark through the entry-point
group ``gill_eval.benchmarks`` with one module: a class that says which examples exist, how an example's
context is built and what its reference is, and a ``BenchmarkSpec`` that declares the rest
(docs/benchmarks.md). It runs on the data that `gill-eval prepare coco` writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from PIL import Image

from gill_eval.bench.data import PreparedDataset
from gill_eval.bench.generation import GenerationJob
from gill_eval.bench.registry import SIMILARITY, BenchmarkSpec, Layout, ProtocolVersion
from gill_eval.errors import ConfigError

NAME, CONTEXT = "demo-captions", "caption"


class CaptionToImage:
    name, table, kind = NAME, "demo", SIMILARITY

    def __init__(self, dataset: PreparedDataset | None = None) -> None:
        self.dataset = dataset or PreparedDataset("coco")

    @cached_property
    def captions(self) -> dict[str, tuple[str, str]]:
        """Caption id -> (caption, image key), for the captions whose photo is available."""
        available = self.dataset.available()
        rows = self.dataset.examples(columns=["caption_id", "image_id", "caption"])
        return {str(r["caption_id"]): (str(r["caption"]).strip(), str(r["image_id"])) for r in rows
                if str(r["image_id"]) in available}

    def coverage(self) -> dict[str, Any]:
        return {"examples_total": len(self.dataset.examples(columns=["caption_id"])),
                "examples_eligible": len(self.captions), "eligibility": "captions whose photo is available"}

    def needs_images(self, context: str) -> bool:
        return False

    def job(self, context: str) -> GenerationJob:
        if context != CONTEXT:
            raise ConfigError(f"{NAME}: context {context!r}; only {CONTEXT!r} exists")
        return GenerationJob(NAME, CONTEXT, list(self.captions), lambda ids: [[self.captions[i][0]] for i in ids],
                             self.dataset.content_hash, {"context": "the caption alone"})

    def references(self, example_ids: Sequence[str]) -> dict[str, Image.Image]:
        keys = {i: self.captions[i][1] for i in example_ids}
        images = self.dataset.images(set(keys.values()))
        return {i: images[key] for i, key in keys.items()}


BENCHMARK = BenchmarkSpec(
    name=NAME,
    kind=SIMILARITY,
    layout=Layout("demo", "Demo. COCO caption to image (a plugin benchmark)", NAME, ["clip_similarity", "lpips"],
                  [CONTEXT], {CONTEXT: ""}),
    protocol=ProtocolVersion(3, 1),
    protocol_text="one image per caption and seed; CLIP similarity and LPIPS against the caption's photo",
    build=lambda num: CaptionToImage(),
)
