"""A third-party model: uniform noise drawn from each example's own generator.

It exists to show (and test) that a package outside gill-eval plugs in through the entry-point group
``gill_eval.models`` with typed options, and that gill-eval hands it contexts and per-example seeds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from PIL import Image

from gill_eval.errors import ConfigError
from gill_eval.models.base import ACCEPTS_IMAGES, GENERATE, Context, Model, cpu_generator, option


@dataclasses.dataclass
class NoiseOptions:
    size: int = option(16, "image side in pixels")
    scale: float = option(1.0, "multiplier of the noise (1.0 spans 0..255)")
    grey: bool = option(False, "one channel repeated three times")
    batch_size: int = option(4, "unused; a runtime option", runtime=True)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ConfigError(f"option size={self.size}: must be at least 1")


class NoiseModel(Model):
    name = "demo-noise"
    capabilities = frozenset({GENERATE, ACCEPTS_IMAGES})
    Options = NoiseOptions
    description = "uniform noise from each example's generator (a demo third-party plugin)"

    def generate(self, contexts: Sequence[Context], seeds: Sequence[int]) -> list[Image.Image]:
        self.check_generate_args(contexts, seeds)
        images = []
        for seed in seeds:
            channels = 1 if self.options.grey else 3
            noise = torch.rand((self.options.size, self.options.size, channels), generator=cpu_generator(seed))
            pixels = (noise * 255 * self.options.scale).clamp(0, 255).to(torch.uint8).expand(-1, -1, 3)
            images.append(Image.fromarray(pixels.contiguous().numpy()))
        self.last_run_stats = {"items": [["text" if isinstance(i, str) else "image" for i in c] for c in contexts]}
        return images
