"""GLIDE (filtered, OpenAI's ``glide-text2im``): 64x64 base model plus the 256x256 upsampler.

``glide-text2im`` is not on PyPI; it is an optional extra (``pip install
git+https://github.com/openai/glide-text2im``), checked by the registry before this model is built.
GILL's released code has no GLIDE script, so the sampling follows the package's text2im notebook, the
only published recipe: classifier-free guidance 3.0 on the base model's stochastic sampler respaced to
100 steps, then the upsampler's DDIM sampler respaced to ``fast27`` with its initial noise scaled by 0.997
(docs/protocols.md, GLIDE). gill-eval's only change is where randomness comes from: the package draws
from the global torch RNG, so an image would depend on what ran before it; here every random draw of item
``i`` (initial noise, per-step noise, upsampler noise) comes from item ``i``'s own CPU generator, so a
batch equals single calls. The per-step update is the package's ``p_sample`` written out with that noise.

Weights: a folder with the package's ``base.pt`` and ``upsample.pt`` (state dicts, read with
``weights_only=True``), by default the registered weight ``glide`` that ``gill-eval models fetch glide``
stages from OpenAI's URLs. The architectures are the package's own ``model_and_diffusion_defaults()`` and
``model_and_diffusion_defaults_upsampler()``, updated with the folder's optional ``glide_config.json``
(which only ``tiny-glide``'s folder has: the same models at small widths).
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
from gill_eval.models.pixels import non_finite_cause, require_finite
from gill_eval.models.tiny import GLIDE_CONFIG

INSTALL = "pip install git+https://github.com/openai/glide-text2im"
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
    description = "GLIDE (filtered) 64x64 + 256x256 upsampler, guidance 3.0 (optional: glide-text2im)"
    requires = ("glide_text2im",)
    install_hint = INSTALL

    def __init__(self, options: GlideOptions | None = None) -> None:
        super().__init__(options)
        from glide_text2im.model_creation import (
            create_model_and_diffusion,
            model_and_diffusion_defaults,
            model_and_diffusion_defaults_upsampler,
        )

        self.device = resolve_device(self.options.device)
        if self.options.use_fp16 is None:
            self.options.use_fp16 = self.device.type == "cuda"
        self.source = self._default_weights() if self.options.weights is None else self.options.weights
        folder = glide_weights_dir(self.source)  # first: missing weights fail before any work
        overrides = read_overrides(folder)
        self.base_config = {**model_and_diffusion_defaults(), **overrides.get("base", {})}
        self.base_config.update(use_fp16=self.options.use_fp16, timestep_respacing=self.options.base_steps)
        self.up_config = {**model_and_diffusion_defaults_upsampler(), **overrides.get("upsample", {})}
        self.up_config.update(use_fp16=self.options.use_fp16, timestep_respacing=self.options.upsample_steps)
        self.base, self.base_diffusion = self._build(create_model_and_diffusion, self.base_config, folder, "base")
        self.up, self.up_diffusion = self._build(create_model_and_diffusion, self.up_config, folder, "upsample")
        self._hashes: dict[str, str] | None = None

    def _default_weights(self) -> str:
        return "glide"

    def _build(self, create: Any, config: dict[str, Any], folder: Path, checkpoint: str) -> tuple[Any, Any]:
        try:
            model, diffusion = create(**config)
        except (ValueError, KeyError, AssertionError) as exc:  # e.g. an unparsable timestep respacing
            raise ConfigError(f"model {self.name!r}: invalid setting for the {checkpoint} model: {exc}") from None
        model.eval()
        if self.options.use_fp16:
            model.convert_to_fp16()
        model.to(self.device)
        path = folder / f"{checkpoint}.pt"
        try:
            model.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))
        except RuntimeError as exc:  # a checkpoint of another architecture
            first = str(exc).strip().splitlines()[0]
            raise InputError(f"{path}: does not fit the {checkpoint} model built from its config ({first})") from None
        return model, diffusion

    def weight_hashes(self) -> dict[str, str]:
        if self._hashes is None:
            self._hashes = {"glide": weights_fingerprint(self.source, registered_as="glide")}
        return self._hashes

    def _tokens(
        self, model: Any, prompts: Sequence[str], text_ctx: int
    ) -> tuple[torch.Tensor, torch.Tensor, list[bool]]:
        tokens, masks, truncated = [], [], []
        for prompt in prompts:
            ids = model.tokenizer.encode(prompt)
            truncated.append(len(ids) > text_ctx)
            padded, mask = model.tokenizer.padded_tokens_and_mask(ids, text_ctx)
            tokens.append(padded)
            masks.append(mask)
        return (torch.tensor(tokens, device=self.device), torch.tensor(masks, dtype=torch.bool, device=self.device),
                truncated)

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

    def _noise(self, generators: list[torch.Generator], shape: tuple[int, ...]) -> torch.Tensor:
        """One draw per item from its own generator (CPU), stacked and moved to the device."""
        return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(self.device)

    @torch.no_grad()
    def _sample(self, prompts: list[str],
                generators: list[torch.Generator]) -> tuple[list[Image.Image | None], list[bool]]:
        """The images of ``prompts`` (None for one with NaN/inf values, which the uint8 cast would turn
        black: docs/reliability.md) and whether each prompt was cut at the text context."""
        n = len(prompts)
        text_ctx = self.base_config["text_ctx"]
        tokens, mask, truncated = self._tokens(self.base, prompts, text_ctx)
        uncond, uncond_mask, _ = self._tokens(self.base, [""] * n, text_ctx)
        kwargs = {"tokens": torch.cat([tokens, uncond]), "mask": torch.cat([mask, uncond_mask])}
        guidance = self.options.guidance

        def guided(x_t: torch.Tensor, ts: torch.Tensor, **model_kwargs: Any) -> torch.Tensor:
            half = x_t[: len(x_t) // 2]
            out = self.base(torch.cat([half, half]), ts, **model_kwargs)
            eps, rest = out[:, :3], out[:, 3:]
            cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
            half_eps = uncond_eps + guidance * (cond_eps - uncond_eps)
            return torch.cat([torch.cat([half_eps, half_eps]), rest], dim=1)

        size = self.base_config["image_size"]
        x = self._noise(generators, (3, size, size))
        x = torch.cat([x, x])
        self.base.del_cache()
        for i in reversed(range(self.base_diffusion.num_timesteps)):
            t = torch.tensor([i] * (2 * n), device=self.device)
            out = self.base_diffusion.p_mean_variance(guided, x, t, clip_denoised=True, model_kwargs=kwargs)
            noise = self._noise(generators, (3, size, size))
            sample = out["mean"]
            if i > 0:
                sample = sample + torch.exp(0.5 * out["log_variance"]) * torch.cat([noise, noise])
            x = sample
        self.base.del_cache()
        low = x[:n]

        up_ctx = self.up_config["text_ctx"]
        up_tokens, up_mask, _ = self._tokens(self.up, prompts, up_ctx)
        up_size = self.up_config["image_size"]
        up_kwargs = {"low_res": ((low + 1) * 127.5).round() / 127.5 - 1, "tokens": up_tokens, "mask": up_mask}
        self.up.del_cache()
        up_noise = self._noise(generators, (3, up_size, up_size)) * self.options.upsample_temp
        up = self.up_diffusion.ddim_sample_loop(
            self.up, (n, 3, up_size, up_size), noise=up_noise, device=self.device, clip_denoised=True,
            progress=False, model_kwargs=up_kwargs,
        )
        self.up.del_cache()
        finite = torch.isfinite(up).flatten(1).all(dim=1).tolist()
        pixels = ((up + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(p) if ok else None for p, ok in zip(pixels, finite, strict=True)], truncated



class TinyGlideModel(GlideModel):
    """The tiny random GLIDE (same code path, meaningless images): for tests and the quickstart."""

    name = "tiny-glide"
    Options = TinyGlideOptions
    description = ("tiny random-weight GLIDE (64x64 base + 128x128 upsampler) for tests and the quickstart; "
                   "not a real model (optional: glide-text2im)")

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
    """The folder's ``glide_config.json`` (changes to the package's defaults per checkpoint), or none."""
    from glide_text2im.model_creation import model_and_diffusion_defaults

    path = folder / GLIDE_CONFIG
    if not path.is_file():
        return {}
    try:
        overrides = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    known = set(model_and_diffusion_defaults())
    for name, changes in overrides.items():
        if name not in CHECKPOINTS or not isinstance(changes, dict):
            raise InputError(f"{path}: key {name!r}: expected 'base' or 'upsample' holding an object")
        if unknown := sorted(set(changes) - known):
            raise InputError(f"{path}: {name}: unknown setting(s) {', '.join(unknown)} "
                             f"(glide-text2im's model_and_diffusion_defaults() has {', '.join(sorted(known))})")
    return overrides
