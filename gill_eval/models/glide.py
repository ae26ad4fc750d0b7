"""GLIDE (filtered, OpenAI's ``glide-text2im``): 64x64 base model plus the 256x256 upsampler.

``glide-text2im`` is not on PyPI; it is an optional extra (``pip install
git+https://github.com/openai/glide-text2im``), checked by the registry before this model is built.
The sampling follows the package's text2im notebook: classifier-free guidance 3.0 (the GLIDE paper's
setting) on the base model's stochastic sampler, then the upsampler's DDIM sampler with noise scaled by
``upsample_temp``. gill-eval's only change is where randomness comes from: the package draws from the
global torch RNG, so an image would depend on what ran before it; here every random draw of item ``i``
(initial noise, per-step noise, upsampler noise) comes from item ``i``'s own CPU generator, so a batch
equals single calls. The per-step update is the package's ``p_sample`` written out with that noise.

Checkpoints are the package's own (``base``, ``upsample``), cached under ``cache_root()/glide`` instead of
the package's default (a folder in the current directory), and read with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import torch
from PIL import Image

from gill_eval.errors import ConfigError, OfflineError
from gill_eval.models.base import (
    GENERATE,
    Context,
    Model,
    cpu_generator,
    join_captions,
    option,
    resolve_device,
    truncation_stats,
)

INSTALL = "pip install git+https://github.com/openai/glide-text2im"


@dataclasses.dataclass
class GlideOptions:
    """Options of ``glide``; defaults follow glide-text2im's text2im notebook and the GLIDE paper."""

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
        self.base_config = model_and_diffusion_defaults()
        self.base_config.update(use_fp16=self.options.use_fp16, timestep_respacing=self.options.base_steps)
        self.up_config = model_and_diffusion_defaults_upsampler()
        self.up_config.update(use_fp16=self.options.use_fp16, timestep_respacing=self.options.upsample_steps)
        self.base, self.base_diffusion = self._build(create_model_and_diffusion, self.base_config, "base")
        self.up, self.up_diffusion = self._build(create_model_and_diffusion, self.up_config, "upsample")
        self._hashes: dict[str, str] | None = None

    def _build(self, create: Any, config: dict[str, Any], checkpoint: str) -> tuple[Any, Any]:
        state = load_glide_checkpoint(checkpoint, self.device)  # first: a missing file fails before any work
        try:
            model, diffusion = create(**config)
        except (ValueError, KeyError) as exc:  # e.g. an unparsable timestep respacing
            raise ConfigError(f"model 'glide': invalid setting for the {checkpoint} model: {exc}") from None
        model.eval()
        if self.options.use_fp16:
            model.convert_to_fp16()
        model.to(self.device)
        model.load_state_dict(state)
        return model, diffusion

    def weight_hashes(self) -> dict[str, str]:
        from gill_eval.store.atomic import sha256_file

        if self._hashes is None:
            self._hashes = {name: sha256_file(checkpoint_path(name)) for name in ("base", "upsample")}
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
        images: list[Image.Image] = []
        truncated: list[bool] = []
        size = self.options.batch_size
        for start in range(0, len(prompts), size):
            generators = [cpu_generator(seed) for seed in seeds[start : start + size]]
            chunk_images, chunk_truncated = self._sample(prompts[start : start + size], generators)
            images.extend(chunk_images)
            truncated.extend(chunk_truncated)
        self.last_run_stats = truncation_stats(truncated)
        return images

    def _noise(self, generators: list[torch.Generator], shape: tuple[int, ...]) -> torch.Tensor:
        """One draw per item from its own generator (CPU), stacked and moved to the device."""
        return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(self.device)

    @torch.no_grad()
    def _sample(self, prompts: list[str], generators: list[torch.Generator]) -> tuple[list[Image.Image], list[bool]]:
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
        pixels = ((up + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(p) for p in pixels], truncated


def checkpoint_dir() -> Path:
    """Where GLIDE checkpoints are cached (not the package's default, a folder in the current directory)."""
    from gill_eval.store.root import cache_root

    return cache_root() / "glide"


def checkpoint_path(name: str) -> Path:
    """The cached file of checkpoint ``name`` (``base`` or ``upsample``), named as the package names it."""
    from glide_text2im.download import MODEL_PATHS

    return checkpoint_dir() / MODEL_PATHS[name].split("/")[-1]


def load_glide_checkpoint(name: str, device: torch.device) -> dict[str, torch.Tensor]:
    """A GLIDE state dict: from the cache if present (never touching the network), else downloaded first
    with the package's own fetcher (its ``load_checkpoint`` would contact the server even when the file is
    cached); offline mode fails at once naming the file it needs."""
    from gill_eval.models.weights import is_offline

    path = checkpoint_path(name)
    if not path.is_file():
        if is_offline():
            raise OfflineError(f"GLIDE checkpoint {name!r} is not staged at {path} and offline mode is on; "
                               f"run once online, or copy the package's {path.name} there")
        from glide_text2im.download import MODEL_PATHS, fetch_file_cached

        fetch_file_cached(MODEL_PATHS[name], progress=True, cache_dir=str(checkpoint_dir()))
    return torch.load(path, map_location=device, weights_only=True)
