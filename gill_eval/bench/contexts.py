"""Evaluation inputs: which captions and images a model sees (docs/protocols.md, GILL Tables 1-2 and Fig. 6/8).

VIST contexts are written ``NcMi``: the last N captions of the story, with the M images that precede the
last caption interleaved, each image after its own caption. ``1c`` = ``1c0i`` (the last caption),
``5c`` = ``5c0i``, ``5c4i`` = ``c1, img1, ..., c4, img4, c5``. The target is always image 5.
VisDial contexts are ``rR``: the Q/A lines of the first R rounds, no caption, no image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from PIL import Image

from gill_eval.errors import ConfigError
from gill_eval.models.base import Context

STORY_LENGTH = 5
_VIST_RE = re.compile(r"^([1-5])c(?:([0-4])i)?$")


@dataclass(frozen=True)
class VistContext:
    """Last ``captions`` captions with the ``images`` images preceding the final caption."""

    captions: int
    images: int

    @property
    def label(self) -> str:
        return f"{self.captions}c" + (f"{self.images}i" if self.images else "")

    @property
    def image_positions(self) -> list[int]:
        """0-based story positions of the context images (those before the last caption)."""
        return list(range(STORY_LENGTH - 1 - self.images, STORY_LENGTH - 1))


def parse_vist_context(text: str) -> VistContext:
    """``1c``, ``5c``, ``5c4i`` or any ``NcMi`` with 1 <= N <= 5 and 0 <= M <= 4."""
    match = _VIST_RE.match(text.strip())
    if not match:
        raise ConfigError(f"--context {text!r}: expected 1c, 5c, 5c4i or NcMi (N in 1-5, M in 0-4)")
    return VistContext(int(match.group(1)), int(match.group(2) or 0))


def vist_context(spec: VistContext, captions: list[str], images: dict[int, Image.Image]) -> Context:
    """Interleave the story's captions and images for ``spec`` (images keyed by story position)."""
    if len(captions) != STORY_LENGTH:
        raise ValueError(f"a VIST story has {STORY_LENGTH} captions, got {len(captions)}")
    context: Context = []
    first_caption = STORY_LENGTH - spec.captions
    for pos in range(min(first_caption, STORY_LENGTH - 1 - spec.images), STORY_LENGTH):
        if pos >= first_caption:
            context.append(captions[pos])
        if pos in spec.image_positions:
            context.append(images[pos])
    return context


def parse_rounds(text: str) -> list[int]:
    """``"1,5,10"`` -> [1, 5, 10] (each 1..10)."""
    try:
        rounds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--rounds {text!r}: expected comma-separated integers, e.g. 1,5,10") from None
    if not rounds or any(not 1 <= r <= 10 for r in rounds):
        raise ConfigError(f"--rounds {text!r}: each round count must be in 1..10")
    return sorted(set(rounds))


def visdial_text(questions: list[str], answers: list[str], rounds: int) -> str:
    """``"Q: " + question`` and ``"A: " + answer`` lines of the first ``rounds`` rounds, joined by newlines.

    ``questions`` are the prepared ones, which already carry the official "?" (datasets/visdial.py);
    nothing is stripped or added, as in the official script (docs/protocols.md, VisDial).
    """
    if len(questions) < rounds or len(answers) < rounds:
        raise ValueError(f"dialog has {min(len(questions), len(answers))} rounds, {rounds} requested")
    lines = []
    for q, a in zip(questions[:rounds], answers[:rounds], strict=True):
        lines += [f"Q: {q}", f"A: {a}"]
    return "\n".join(lines)


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` or ``"0,2,7"`` -> sorted unique seeds."""
    seeds: set[int] = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-"))
                if hi < lo:
                    raise ConfigError(f"--seeds {text!r}: the range {lo}-{hi} is reversed; write {hi}-{lo}")
                seeds.update(range(lo, hi + 1))
            elif part:
                seeds.add(int(part))
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected e.g. 0-4 or 0,1,2") from None
    if not seeds or min(seeds) < 0:
        raise ConfigError(f"--seeds {text!r}: need at least one non-negative seed")
    return sorted(seeds)
