"""VisDial generation (GILL Table 2): generate the dialog's image from the Q/A lines of its first R rounds.

No caption and no image are given (the caption would describe the image directly). The example set is
the dialogs whose image is available and that have at least 10 rounds, the same for every R.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from PIL import Image

from gill_eval.bench.contexts import visdial_text
from gill_eval.bench.data import PreparedDataset
from gill_eval.bench.generation import GenerationJob
from gill_eval.errors import ConfigError

IMAGE_ID, QUESTIONS, ANSWERS = "image_id", "questions", "answers"
MAX_ROUNDS = 10


def rounds_label(rounds: int) -> str:
    return f"r{rounds}"


def parse_rounds_label(label: str) -> int:
    if not label.startswith("r") or not label[1:].isdigit() or not 1 <= int(label[1:]) <= MAX_ROUNDS:
        raise ConfigError(f"VisDial context {label!r}: expected r1 .. r10")
    return int(label[1:])


class VisDialBenchmark:
    """``bench visdial``: contexts ``r1 .. r10``; CLIP similarity and LPIPS against the dialog's image."""

    name = "visdial"
    table = "table2"
    kind = "similarity"

    def __init__(self, dataset: PreparedDataset | None = None) -> None:
        self.dataset = dataset or PreparedDataset("visdial")

    @cached_property
    def dialogs(self) -> dict[str, dict[str, Any]]:
        rows = self.dataset.examples(columns=[IMAGE_ID, QUESTIONS, ANSWERS])
        return {str(r[IMAGE_ID]): {"questions": list(r[QUESTIONS]), "answers": list(r[ANSWERS])} for r in rows}

    @cached_property
    def eligible(self) -> list[str]:
        available = self.dataset.available()
        return sorted(i for i, d in self.dialogs.items()
                      if i in available and min(len(d["questions"]), len(d["answers"])) >= MAX_ROUNDS)

    def coverage(self) -> dict[str, Any]:
        return {"examples_total": len(self.dialogs), "examples_eligible": len(self.eligible),
                "eligibility": "dialogs with an available image and 10 rounds"}

    def needs_images(self, context: str) -> bool:
        return False

    def job(self, context: str) -> GenerationJob:
        rounds = parse_rounds_label(context)

        def build(ids: list[str]) -> list:
            return [[visdial_text(self.dialogs[i]["questions"], self.dialogs[i]["answers"], rounds)] for i in ids]

        return GenerationJob(self.name, context, list(self.eligible), build, self.dataset.content_hash,
                             {"rounds": rounds, "text": "Q: question?\\nA: answer lines, no caption"})

    def references(self, example_ids: Sequence[str]) -> dict[str, Image.Image]:
        return self.dataset.images(example_ids)
