"""The ``gill`` and ``tiny-gill`` models of the registry (entry points in pyproject.toml).

All four capabilities go through one path, the evaluations' setting (spec §5): the context is embedded,
decoded greedily for ``num_words`` steps with ``gen_scale_factor`` (1e5: step 0 emits the forced [IMG]
block, step 1 computes its states), and the first [IMG] block's final hidden states are used:

* ``generate``: GILLMapper -> ``prompt_embeds`` -> stock diffusers SD (7.5, 50 PNDM steps, 512x512), one
  CPU generator per example (``cpu_generator(seed)``) instead of the evaluations' single shared CUDA one;
* ``embed_queries``: the linear retrieval head on the [IMG0] state, L2-normalised;
* ``embed_images``: ``visual_fc`` of the CLIP pooled output, L2-normalised;
* ``decision_features``: the [IMG0] state itself (4096-d), the input of the official decision model.

The model is built on first use, so listing models or computing a fingerprint stays cheap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import numpy as np
from PIL import Image

from gill_eval.console import track
from gill_eval.errors import GillEvalError
from gill_eval.models.base import (
    ACCEPTS_IMAGES,
    DECIDE,
    GENERATE,
    RETRIEVE,
    Context,
    Model,
    cpu_generator,
    option,
    resolve_device,
    weights_fingerprint,
)
from gill_eval.models.gill.checkpoint import ARGS_FILE, CHECKPOINT_FILE, DECISION_FILE
from gill_eval.models.gill.decision import decision_probabilities
from gill_eval.models.gill.load import Sources, load_gill, resolve_sources
from gill_eval.models.gill.model import GILL, DecodeSettings, SDSettings

_IMAGE_BATCH = 32


@dataclasses.dataclass
class GILLOptions:
    """Options of ``gill``. Empty component fields fall back to ``model_args.json`` / SD 1.5."""

    checkpoint: str = option("", "folder with pretrained_ckpt.pth.tar, model_args.json, decision_model.pth.tar "
                                 "(default: the staged 'gill-checkpoint' weight)")
    llm: str = option("", "OPT hub id or folder (default: model_args.json opt_version, facebook/opt-6.7b)")
    visual_encoder: str = option("", "CLIP hub id or folder (default: model_args.json visual_encoder, "
                                     "openai/clip-vit-large-patch14)")
    sd: str = option("", "Stable Diffusion hub id or folder (default: stable-diffusion-v1-5/stable-diffusion-v1-5)")
    precision: Literal["auto", "bf16", "fp32"] = option(
        "auto", "auto: bf16 LLM/CLIP/heads + fp16 SD on GPU (the official setting), fp32 on CPU")
    guidance: float = option(7.5, "classifier-free guidance scale of the SD call")
    steps: int = option(50, "SD denoising steps (PNDM)")
    height: int = option(512, "image height in pixels (multiple of 8)")
    width: int = option(512, "image width in pixels (multiple of 8)")
    num_words: int = option(2, "decoding steps (the evaluations use 2)")
    gen_scale_factor: float = option(1e5, "[IMG0] logit rule |logit| x factor (1e5 forces generation)")
    device: str = option("auto", "torch device (default: cuda if available, else cpu)", runtime=True)
    device_map: str = option("", "transformers device_map for an LLM that does not fit one GPU (e.g. auto)",
                             runtime=True)


@dataclasses.dataclass
class TinyGILLOptions(GILLOptions):
    """Options of ``tiny-gill``: the same knobs; the tiny SD draws 64x64 images."""

    checkpoint: str = option("", "tiny GILL folder (default: built on first use under the cache root)")
    height: int = option(64, "image height in pixels (multiple of 8)")
    width: int = option(64, "image width in pixels (multiple of 8)")


class GILLModel(Model):
    """GILL from the released checkpoint on current transformers/diffusers."""

    name = "gill"
    capabilities = frozenset({GENERATE, RETRIEVE, DECIDE, ACCEPTS_IMAGES})
    Options = GILLOptions
    description = "GILL (OPT-6.7B + CLIP ViT-L/14 + SD 1.5) from the released checkpoint; bf16/fp16 on GPU"

    def __init__(self, options: GILLOptions | None = None) -> None:
        super().__init__(options)
        if self.options.precision == "auto":
            # Resolved before the fingerprint is taken: runs at different precisions must not share results.
            on_gpu = resolve_device(self.options.device).type == "cuda"
            self.options.precision = "bf16" if on_gpu else "fp32"
        self.sources: Sources = resolve_sources(self._checkpoint(), self.options.llm, self.options.visual_encoder,
                                                self.options.sd)
        self._gill: GILL | None = None
        self._hashes: dict[str, str] | None = None

    def _checkpoint(self) -> str:
        return self.options.checkpoint

    @property
    def gill(self) -> GILL:
        """The loaded model (built on first use)."""
        if self._gill is None:
            self._gill = load_gill(self.sources, precision=self.options.precision, device=self.options.device,
                                   device_map=self.options.device_map)
        return self._gill

    def weight_hashes(self) -> dict[str, str]:
        if self._hashes is None:
            folder = self.sources.checkpoint
            hashes = {name: weights_fingerprint(str(folder / name))
                      for name in (CHECKPOINT_FILE, ARGS_FILE, DECISION_FILE) if (folder / name).is_file()}
            hashes["llm"] = weights_fingerprint(self.sources.llm, registered_as="opt-6.7b")
            hashes["visual_encoder"] = weights_fingerprint(self.sources.visual_encoder,
                                                           registered_as="clip-vit-large-patch14")
            hashes["sd"] = weights_fingerprint(self.sources.sd, registered_as="sd15")
            self._hashes = hashes
        return self._hashes

    def decode_settings(self) -> DecodeSettings:
        return DecodeSettings(num_words=self.options.num_words, gen_scale_factor=self.options.gen_scale_factor)

    def sd_settings(self) -> SDSettings:
        return SDSettings(guidance=self.options.guidance, steps=self.options.steps, height=self.options.height,
                          width=self.options.width)

    def generate(self, contexts: Sequence[Context], seeds: Sequence[int]) -> list[Image.Image]:
        self.check_generate_args(contexts, seeds)
        gill, decode, sd = self.gill, self.decode_settings(), self.sd_settings()
        images: list[Image.Image] = []
        nsfw = 0
        for context, seed in track(list(zip(contexts, seeds)), "GILL generate"):
            block = gill.forced_img_states(context, decode)
            image, flagged = gill.sd_image(gill.prompt_embeds(block), cpu_generator(seed), sd)
            images.append(image)
            nsfw += flagged
        self.last_run_stats = {"contexts": len(images), "nsfw_flagged": nsfw}
        return images

    def embed_queries(self, contexts: Sequence[Context]) -> np.ndarray:
        gill, decode = self.gill, self.decode_settings()
        rows = [gill.retrieval_query(gill.forced_img_states(c, decode)) for c in track(list(contexts), "GILL queries")]
        self.last_run_stats = {"contexts": len(rows)}
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, gill.heads.dims.ret_emb_dim), np.float32)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        gill = self.gill
        chunks = [gill.retrieval_images(images[i:i + _IMAGE_BATCH]) for i in range(0, len(images), _IMAGE_BATCH)]
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, gill.heads.dims.ret_emb_dim),
                                                                                  np.float32)

    def decision_features(self, prompts: Sequence[str]) -> np.ndarray:
        gill, decode = self.gill, self.decode_settings()
        rows = [gill.forced_img_states([p], decode)[0, 0].float().cpu().numpy()
                for p in track(list(prompts), "GILL decision features")]
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, gill.heads.dims.lm_dim), np.float32)

    def official_decisions(self, features: np.ndarray) -> np.ndarray:
        """(N, 2) [p_gen, p_ret] of the released decision model on ``decision_features`` output."""
        if self.gill.decision is None:
            raise GillEvalError(f"{self.sources.checkpoint / DECISION_FILE}: not found, so no official decisions")
        return decision_probabilities(self.gill.decision, features)


class TinyGILLModel(GILLModel):
    """A tiny random GILL in the official layout (same code path, meaningless outputs): tests, quickstart."""

    name = "tiny-gill"
    Options = TinyGILLOptions
    description = "tiny random-weight GILL in the official checkpoint layout (64x64) for tests; not a real model"

    def _checkpoint(self) -> str:
        if self.options.checkpoint:
            return self.options.checkpoint
        from gill_eval.models.gill.tiny import tiny_gill_dir

        return str(tiny_gill_dir())

