"""VIST story generation (GILL Table 1): generate the story's last image from a context of its story.

Example set: the val stories whose five images are all available (the target, and every image any
``NcMi`` context can use), so every context and every model is scored on the same stories. Examples are
keyed by story id (GILL keyed by photo id, so stories ending on the same photo overwrote each other).

Images: the dataset must be prepared with ``--store gill-224`` (the default), so references, context
images and retrieval candidates are GILL's own pixels: the url_o original squashed to 224x224 and stored
losslessly (docs/protocols.md). Any other storage is refused with the command that re-prepares it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from PIL import Image

from gill_eval.bench.contexts import STORY_LENGTH, parse_vist_context, vist_context
from gill_eval.bench.data import PreparedDataset
from gill_eval.bench.generation import GenerationJob
from gill_eval.datasets.vist import DEFAULT_STORE
from gill_eval.errors import InputError

STORY_ID, PHOTO_IDS, TEXTS = "story_id", "photo_ids", "texts"


class VistStories:
    """The prepared VIST val stories and which of them have all five images."""

    def __init__(self, dataset: PreparedDataset | None = None) -> None:
        self.dataset = dataset or PreparedDataset("vist")

    @cached_property
    def stories(self) -> dict[str, dict[str, Any]]:
        stored = self.dataset.manifest.options.get("store")
        if stored != DEFAULT_STORE:
            raise InputError(f"{self.dataset.folder}: images stored as {stored or 'img2dataset 512-px JPEG'}, not as "
                             f"GILL's {DEFAULT_STORE} PNGs the VIST protocol scores against; rerun "
                             "`gill-eval prepare vist --sis ... --overwrite`")
        rows = self.dataset.examples(columns=[STORY_ID, PHOTO_IDS, TEXTS])
        out: dict[str, dict[str, Any]] = {}
        for i, row in enumerate(rows):
            sid = str(row[STORY_ID])
            if len(row[PHOTO_IDS]) != STORY_LENGTH or len(row[TEXTS]) != STORY_LENGTH:
                raise InputError(f"{self.dataset.folder}/examples row {i} (story {sid}): not {STORY_LENGTH} photos/texts")
            out[sid] = {"photo_ids": [str(p) for p in row[PHOTO_IDS]], "texts": list(row[TEXTS])}
        return out

    @cached_property
    def complete(self) -> list[str]:
        """Story ids whose five images are all available."""
        available = self.dataset.available()
        return sorted(sid for sid, s in self.stories.items() if all(p in available for p in s["photo_ids"]))

    def coverage(self) -> dict[str, Any]:
        return {"examples_total": len(self.stories), "examples_eligible": len(self.complete),
                "eligibility": "stories whose 5 images are all available"}


class VistBenchmark:
    """``bench vist``: contexts ``1c|5c|5c4i|NcMi``, CLIP similarity and LPIPS against image 5."""

    name = "vist"
    table = "table1"
    kind = "similarity"

    def __init__(self, stories: VistStories | None = None) -> None:
        self.data = stories or VistStories()
        self.dataset = self.data.dataset

    def needs_images(self, context: str) -> bool:
        return parse_vist_context(context).images > 0

    def coverage(self) -> dict[str, Any]:
        return self.data.coverage()

    def job(self, context: str) -> GenerationJob:
        spec = parse_vist_context(context)

        def build(ids: list[str]) -> list:
            keys = [self.data.stories[sid]["photo_ids"][p] for sid in ids for p in spec.image_positions]
            images = self.dataset.images(keys) if keys else {}
            return [
                vist_context(spec, self.data.stories[sid]["texts"],
                             {p: images[self.data.stories[sid]["photo_ids"][p]] for p in spec.image_positions})
                for sid in ids
            ]

        return GenerationJob(self.name, spec.label, list(self.data.complete), build, self.dataset.content_hash,
                             {"context": spec.label, "context_images": f"as stored by prepare ({DEFAULT_STORE})",
                              "target": "image 5 of the story"})

    def references(self, example_ids: Sequence[str]) -> dict[str, Image.Image]:
        keys = {sid: self.data.stories[sid]["photo_ids"][STORY_LENGTH - 1] for sid in example_ids}
        images = self.dataset.images(keys.values())
        return {sid: images[key] for sid, key in keys.items()}
