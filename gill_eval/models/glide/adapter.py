"""The ``glide`` and ``tiny-glide`` registry entries: GLIDE (filtered) 64x64 base plus upsampler, text only.

GILL's released code has no GLIDE script, so the sampling is glide-text2im's text2im notebook, the only
published recipe (``sampler``): classifier-free guidance 3.0 on the base model's learned-variance sampler
respaced to 100 steps, then the upsampler's DDIM respaced to ``fast27`` from initial noise scaled by 0.997
(docs/protocols.md, GLIDE). The one change: every random draw of item ``i`` (initial noise, one per base
step, upsampler noise, in that order) comes from item ``i``'s own CPU generator, so a batch equals single
calls.

Weights: a folder with OpenAI's ``base.pt`` and ``upsample.pt`` (state dicts under the package's parameter
names, read with ``weights_only=True``), by default the registered weight ``glide`` that ``gill-eval
models fetch glide`` stages from OpenAI's URLs. The architectures are ``config``'s defaults (the
package's), updated with the folder's optional ``glide_config.json`` (which only ``tiny-glide``'s folder
has: the same models at small widths).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import torch
from PIL import Image

from gill_eval.errors import ConfigError, InputError
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
from gill_eval.models.glide.config import BASE_DEFAULTS, UPSAMPLE_DEFAULTS, build
from gill_eval.models.glide.diffusion import SpacedDiffusion
from gill_eval.models.glide.sampler import (
    guided_base_states,
    last,
    quantise,
    to_uint8,
    tokenize,
    upsample_states,
)
from gill_eval.models.glide.tokenizer import glide_tokenizer
from gill_eval.models.glide.unet import Text2ImUNet
from gill_eval.models.pixels import non_finite_cause, require_finite
from gill_eval.models.tiny import GLIDE_CONFIG

INSTALL = "pip install 'gill-eval[glide]'"
CHECKPOINTS = ("base", "upsample")


@dataclasses.dataclass
class GlideOptions:
    """Options of ``glide``; defaults follow glide-text2im's text2im notebook and the GLIDE paper."""

    weights: Optional[str] = option(None, "registered weight name or folder with base.pt and upsample.pt "
                                          "(default: glide, staged by `gill-eval models fetch glide`)")
    guidance: float = option(3.0, "classifier-free guidance scale of the base model")
    base_steps: str = option("100", "timestep respacing of the base model (e.g. 100, 250, fast27)")
    upsample_steps: str = option("fast27", "timestep respacing of the upsampler (DDIM)")
    upsample_temp: float = option(0.997, "scale of the upsampler's initial noise")
    use_fp16: Optional[bool] = option(None, "fp16 weights (default: on GPU only)")
    device: Optional[str] = option(None, "torch device (default: cuda if available, else cpu)", runtime=True)
    batch_size: int = option(8, "images per sampling loop (results do not depend on it)", runtime=True)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"option batch_size={self.batch_size}: must be at least 1")


@dataclasses.dataclass
class TinyGlideOptions(GlideOptions):
    """Options of ``tiny-glide``: the same knobs; weights default to the tiny random GLIDE."""

    weights: Optional[str] = option(None, "folder with base.pt and upsample.pt (default: the tiny random GLIDE "
                                          "built on first use)")


class GlideModel(Model):
    """GLIDE (filtered) text-to-image: base 64x64 + upsampler 256x256, text only."""

    name = "glide"
    capabilities = frozenset({GENERATE})
    Options = GlideOptions
    description = "GLIDE (filtered) 64x64 + 256x256 upsampler, guidance 3.0 (gill-eval's own implementation)"
    requires = ("regex",)
    install_hint = INSTALL

    def __init__(self, options: GlideOptions | None = None) -> None:
        super().__init__(options)
        self.device = resolve_device(self.options.device)
        if self.options.use_fp16 is None:
            self.options.use_fp16 = self.device.type == "cuda"
        self.source = self._default_weights() if self.options.weights is None else self.options.weights
        folder = glide_weights_dir(self.source)  # first: missing weights fail before any work
        overrides = read_overrides(folder)
        self.base_config = {**BASE_DEFAULTS, **overrides.get("base", {}),
                            "use_fp16": self.options.use_fp16, "timestep_respacing": self.options.base_steps}
        self.up_config = {**UPSAMPLE_DEFAULTS, **overrides.get("upsample", {}),
                          "use_fp16": self.options.use_fp16, "timestep_respacing": self.options.upsample_steps}
        self.base, self.base_diffusion = self._build(self.base_config, folder, "base")
        self.up, self.up_diffusion = self._build(self.up_config, folder, "upsample")
        self.tokenizer = glide_tokenizer()
        self._hashes: dict[str, str] | None = None

    def _default_weights(self) -> str:
        return "glide"

    def _build(self, config: dict[str, Any], folder: Path, checkpoint: str) -> tuple[Text2ImUNet, SpacedDiffusion]:
        try:
            model, diffusion = build(config)
        except ConfigError as exc:
            raise ConfigError(f"model {self.name!r}: invalid setting for the {checkpoint} model: {exc}") from None
        path = folder / f"{checkpoint}.pt"
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except RuntimeError as exc:  # a checkpoint of another architecture
            first = str(exc).strip().splitlines()[0]
            raise InputError(f"{path}: does not fit the {checkpoint} model built from its config ({first})") from None
        if self.options.use_fp16:
            model.convert_to_fp16()
        return model.to(self.device), diffusion

    def weight_hashes(self) -> dict[str, str]:
        if self._hashes is None:
            self._hashes = {"glide": weights_fingerprint(self.source, registered_as="glide")}
        return self._hashes

    def generate(self, contexts: Sequence[Context], seeds: Sequence[int]) -> list[Image.Image]:
        self.check_generate_args(contexts, seeds)
        prompts = [join_captions(context) for context in contexts]
        images: list[Image.Image | None] = []
        truncated: list[bool] = []
        size = self.options.batch_size
        for start in range(0, len(prompts), size):
            generators = [cpu_generator(seed) for seed in seeds[start : start + size]]
            chunk_images, chunk_truncated = self._sample(prompts[start : start + size], generators)
            images.extend(chunk_images)
            truncated.extend(chunk_truncated)
        self.last_run_stats = truncation_stats(truncated)
        fix = "use_fp16=false" if self.options.use_fp16 else None
        return require_finite(self.name, images, non_finite_cause(fix, self.source))

    def _noise(self, generators: list[torch.Generator], size: int) -> torch.Tensor:
        """One 3 x size x size draw per item from its own generator (CPU), stacked and moved to the device."""
        return torch.stack([torch.randn((3, size, size), generator=g) for g in generators]).to(self.device)

    @torch.no_grad()
    def _sample(self, prompts: list[str],
                generators: list[torch.Generator]) -> tuple[list[Image.Image | None], list[bool]]:
        """The images of ``prompts`` (None for one with NaN/inf values, which the uint8 cast would turn
        black: docs/reliability.md) and whether each prompt was cut at the text context."""
        n = len(prompts)
        ctx = self.base_config["text_ctx"]
        tokens, mask, truncated = tokenize(self.tokenizer, [*prompts, *[""] * n], ctx, self.device)
        size = self.base_config["image_size"]
        low = last(guided_base_states(
            self.base, self.base_diffusion, self.base.encode_text(tokens, mask), self.options.guidance,
            self._noise(generators, size), lambda: self._noise(generators, size)))
        up_tokens, up_mask, _ = tokenize(self.tokenizer, prompts, self.up_config["text_ctx"], self.device)
        up_noise = self._noise(generators, self.up_config["image_size"]) * self.options.upsample_temp
        up = last(upsample_states(self.up, self.up_diffusion, self.up.encode_text(up_tokens, up_mask),
                                  quantise(low), up_noise))
        finite = torch.isfinite(up).flatten(1).all(dim=1).tolist()
        pixels = to_uint8(up).cpu().numpy()
        return [Image.fromarray(p) if ok else None for p, ok in zip(pixels, finite, strict=True)], truncated[:n]


class TinyGlideModel(GlideModel):
    """The tiny random GLIDE (same code path, meaningless images): for tests and the quickstart."""

    name = "tiny-glide"
    Options = TinyGlideOptions
    description = ("tiny random-weight GLIDE (64x64 base + 128x128 upsampler) for tests and the quickstart; "
                   "not a real model")

    def _default_weights(self) -> str:
        from gill_eval.models.tiny import tiny_glide_dir

        return str(tiny_glide_dir())


def glide_weights_dir(source: str) -> Path:
    """The folder holding ``base.pt`` and ``upsample.pt``: a local folder as is, or a registered weight
    resolved through the weight registry (offline mode fails at once naming `gill-eval models fetch`)."""
    from gill_eval.models import weights

    path = Path(source).expanduser()
    if not path.exists():
        if source not in weights.REGISTRY:
            raise ConfigError(f"option weights={source!r}: neither a folder nor a registered weight (e.g. glide)")
        path = weights.resolve(source)
    missing = [f"{name}.pt" for name in CHECKPOINTS if not (path / f"{name}.pt").is_file()]
    if missing:
        raise InputError(f"{path}: no {' or '.join(missing)}; a GLIDE weights folder holds base.pt and upsample.pt")
    return path


def read_overrides(folder: Path) -> dict[str, dict[str, Any]]:
    """The folder's ``glide_config.json`` (changes to the default settings per checkpoint), or none."""
    path = folder / GLIDE_CONFIG
    if not path.is_file():
        return {}
    try:
        overrides = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    known = set(BASE_DEFAULTS)
    for name, changes in overrides.items():
        if name not in CHECKPOINTS or not isinstance(changes, dict):
            raise InputError(f"{path}: key {name!r}: expected 'base' or 'upsample' holding an object")
        if unknown := sorted(set(changes) - known):
            raise InputError(f"{path}: {name}: unknown setting(s) {', '.join(unknown)} "
                             f"(GLIDE's settings are {', '.join(sorted(known))})")
    return overrides
