"""The Stable Diffusion sampler options shared by every model whose images come from SD (``sd``, ``gill``).

A model's ``Options`` inherits ``SamplerOptions`` to get ``preset``, ``guidance``, ``steps`` and
``scheduler``; FID benchmarks switch every such model to the ``fid`` preset (docs/protocols.md, sampler).
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

from gill_eval.errors import ConfigError
from gill_eval.models.base import option

#: preset -> (guidance, steps, scheduler). "gill": GILL's generation defaults (Tables 1-2; the stock SD 1.5
#: pipeline, so PNDM); "fid": the paper's FID sampler (Table 8: classifier-free guidance 3.0, 250 DDIM steps).
PRESETS: dict[str, tuple[float, int, str]] = {"gill": (7.5, 50, "pndm"), "fid": (3.0, 250, "ddim")}
SCHEDULERS = {"pndm": "PNDMScheduler", "ddim": "DDIMScheduler"}
FID_PRESET = "fid"


@dataclasses.dataclass
class SamplerOptions:
    """``guidance``, ``steps`` and ``scheduler`` default to the preset's values (filled in on construction)."""

    preset: Literal["gill", "fid"] = option("gill", "gill: guidance 7.5, 50 PNDM steps; fid: 3.0, 250 DDIM steps")
    guidance: Optional[float] = option(None, "classifier-free guidance scale (default: the preset's)")
    steps: Optional[int] = option(None, "denoising steps (default: the preset's)")
    scheduler: Optional[Literal["pndm", "ddim"]] = option(None, "sampler (default: the preset's)")

    def __post_init__(self) -> None:
        guidance, steps, scheduler = PRESETS[self.preset]
        self.guidance = guidance if self.guidance is None else self.guidance
        self.steps = steps if self.steps is None else self.steps
        self.scheduler = scheduler if self.scheduler is None else self.scheduler
        if self.steps < 1:
            raise ConfigError(f"option steps={self.steps}: must be at least 1")
        if self.guidance < 0:
            raise ConfigError(f"option guidance={self.guidance}: must be >= 0")

    def scheduler_class(self) -> str:
        """The diffusers scheduler class name of ``scheduler``."""
        return SCHEDULERS[str(self.scheduler)]
