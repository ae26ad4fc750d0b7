"""Stable Diffusion 1.5 through diffusers' own ``StableDiffusionPipeline`` (the paper's text-only baseline).

Why the pipeline object and not a re-implementation: SD is the reference every other model is compared
with, so it must be exactly what users get from diffusers. gill-eval only adds what a benchmark needs:
one CPU generator per (seed, example) (a batch equals single calls), named presets for GILL's two
protocols, and a count of contexts whose text was cut at CLIP's 77 tokens.

Multi-caption contexts are the captions joined with a space (``base.join_captions``); contexts that hold
images raise ``CapabilityError`` (SD is text-only; the paper's tables show "-").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal, Optional

from PIL import Image

from gill_eval.errors import ConfigError
from gill_eval.models.base import (
    GENERATE,
    Context,
    Model,
    cpu_generator,
    join_captions,
    option,
    resolve_device,
    truncation_stats,
    weights_fingerprint,
)
from gill_eval.clip_text import clean_prompts
from gill_eval.models.pixels import finite_pil, non_finite_cause, require_finite
from gill_eval.models.sampler import SamplerOptions

SD15_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"


@dataclasses.dataclass
class SDOptions(SamplerOptions):
    """Options of ``sd``: the shared sampler options (``models.sampler``) and the pipeline's own."""

    weights: Optional[str] = option(None, "hub id, registered weight name or local diffusers folder (default: SD 1.5)")
    height: int = option(512, "image height in pixels (multiple of 8)")
    width: int = option(512, "image width in pixels (multiple of 8)")
    dtype: Optional[Literal["fp16", "fp32", "bf16"]] = option(None, "weights dtype (default: fp16 on GPU, fp32 on CPU)")
    text_cleanup: Literal["gill", "none"] = option(
        "gill", "prompt text clean-up before CLIP's BPE: gill (GILL's transformers 4.30 without ftfy) or none")
    device: Optional[str] = option(None, "torch device (default: cuda if available, else cpu)", runtime=True)
    batch_size: int = option(8, "images per pipeline call (results do not depend on it)", runtime=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("height", "width"):
            if getattr(self, key) < 8 or getattr(self, key) % 8:
                raise ConfigError(f"option {key}={getattr(self, key)}: must be a positive multiple of 8")
        if self.batch_size < 1:
            raise ConfigError(f"option batch_size={self.batch_size}: must be at least 1")


@dataclasses.dataclass
class TinySDOptions(SDOptions):
    """Options of ``tiny-sd``: the same knobs, at the tiny pipeline's 64x64."""

    weights: Optional[str] = option(None, "local diffusers folder (default: the tiny random SD built on first use)")
    height: int = option(64, "image height in pixels (multiple of 8)")
    width: int = option(64, "image width in pixels (multiple of 8)")


class StableDiffusionModel(Model):
    """Stable Diffusion 1.5 (diffusers), text-only generation."""

    name = "sd"
    capabilities = frozenset({GENERATE})
    Options = SDOptions
    description = "Stable Diffusion 1.5 via diffusers (text only; fp16 on GPU); presets gill and fid"

    def __init__(self, options: SDOptions | None = None, pipeline: Any | None = None) -> None:
        """Load the pipeline named by ``options.weights``, or wrap ``pipeline``, an already built
        ``StableDiffusionPipeline`` (benchmarks compare against diffusers on the very same object); its
        scheduler is replaced by the options' one if it differs, so the options always say what runs."""
        super().__init__(options)
        self.device = resolve_device(self.options.device)
        if self.options.dtype is None:
            self.options.dtype = "fp16" if self.device.type == "cuda" else "fp32"
        self._hashes: dict[str, str] | None = None
        self.source: str | None = None
        if pipeline is not None:
            import diffusers

            scheduler_cls = getattr(diffusers, self.options.scheduler_class())
            if type(pipeline.scheduler) is not scheduler_cls:
                pipeline.scheduler = scheduler_cls.from_config(pipeline.scheduler.config)
            self.pipe = pipeline
            return
        from gill_eval.models import weights

        self.source = self._default_weights() if self.options.weights is None else self.options.weights
        self.pipe = weights.load_sd_pipeline(
            self.source, device=self.device, dtype=self.options.dtype, scheduler=self.options.scheduler_class()
        )

    def _default_weights(self) -> str:
        return SD15_ID

    def weight_hashes(self) -> dict[str, str]:
        if self._hashes is None:
            digest = "in-memory" if self.source is None else weights_fingerprint(self.source, registered_as="sd15")
            self._hashes = {"sd": digest}
        return self._hashes

    def prompts(self, contexts: Sequence[Context]) -> list[str]:
        """The text SD sees for each context (captions joined with a space)."""
        return [join_captions(context) for context in contexts]

    def truncated(self, prompts: Sequence[str]) -> list[bool]:
        """Whether each prompt exceeds the CLIP tokenizer's limit (77 with start and end tokens)."""
        tokenizer = self.pipe.tokenizer
        ids = tokenizer(clean_prompts(list(prompts), self.options.text_cleanup), truncation=False,
                        verbose=False)["input_ids"]
        return [len(seq) > tokenizer.model_max_length for seq in ids]

    def pipeline_kwargs(self) -> dict[str, Any]:
        """The settings passed to every pipeline call (benchmarks reuse them for the bare-diffusers loop)."""
        return {
            "guidance_scale": self.options.guidance,
            "num_inference_steps": self.options.steps,
            "height": self.options.height,
            "width": self.options.width,
        }

    def generate(self, contexts: Sequence[Context], seeds: Sequence[int]) -> list[Image.Image]:
        self.check_generate_args(contexts, seeds)
        prompts = self.prompts(contexts)
        size = self.options.batch_size
        images: list[Image.Image | None] = []
        nsfw = 0
        for start in range(0, len(prompts), size):
            chunk = clean_prompts(prompts[start : start + size], self.options.text_cleanup)  # docs/protocols.md
            generators = [cpu_generator(seed) for seed in seeds[start : start + size]]
            # floats, so that NaN/inf is seen before the uint8 cast turns it black (docs/reliability.md)
            out = self.pipe(prompt=chunk, generator=generators, output_type="np", **self.pipeline_kwargs())
            images.extend(finite_pil(out.images))
            nsfw += sum(bool(flag) for flag in (out.nsfw_content_detected or []))
        self.last_run_stats = {**truncation_stats(self.truncated(prompts)), "nsfw_flagged": nsfw}
        fix = "dtype=fp32 or dtype=bf16" if self.options.dtype == "fp16" else None
        return require_finite(self.name, images, non_finite_cause(fix, self.source))


class TinyStableDiffusionModel(StableDiffusionModel):
    """The tiny random SD pipeline (same code path, meaningless images): for tests and the quickstart."""

    name = "tiny-sd"
    Options = TinySDOptions
    description = "tiny random-weight SD pipeline (64x64) for tests and the quickstart; not a real model"

    def _default_weights(self) -> str:
        from gill_eval.models.tiny import tiny_sd_dir

        return str(tiny_sd_dir())
