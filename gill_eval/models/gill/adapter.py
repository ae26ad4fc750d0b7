"""The ``gill`` and ``tiny-gill`` models of the registry (entry points in pyproject.toml).

All four capabilities go through one path, the evaluations' setting (docs/protocols.md): the context is embedded,
decoded greedily for ``num_words`` steps with ``gen_scale_factor`` (1e5: step 0 emits the forced [IMG]
block, step 1 computes its states), and the first [IMG] block's final hidden states are used:

* ``generate``: GILLMapper -> ``prompt_embeds`` -> stock diffusers SD (preset ``gill``: 7.5, 50 PNDM steps;
  ``fid``: 3.0, 250 DDIM steps, the sampler of every FID benchmark; 512x512), one
  CPU generator per example (``cpu_generator(seed)``) instead of the evaluations' single shared CUDA one;
* ``embed_queries``: the linear retrieval head on the [IMG0] state, L2-normalised, except that the context
  is laid out as FROMAGe's retrieval evaluation does (every caption with its own BOS, the [IMG] tokens
  appended to the last one, one forward pass: ``GILL.embed_retrieval_context``);
* ``embed_images``: ``visual_fc`` of the CLIP pooled output, L2-normalised;
* ``decision_features``: the [IMG0] state itself (4096-d), the input of the official decision model.

The model is built on first use, so listing models or computing a fingerprint stays cheap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
from PIL import Image

from gill_eval.console import track
from gill_eval.errors import ConfigError, GillEvalError
from gill_eval.models.base import (
    ACCEPTS_IMAGES,
    DECIDE,
    GENERATE,
    RETRIEVE,
    TEXT,
    Context,
    Model,
    cpu_generator,
    option,
    resolve_device,
    weights_fingerprint,
)
from gill_eval.models.gill.checkpoint import ARGS_FILE, CHECKPOINT_FILE, DECISION_FILE
from gill_eval.models.gill.decision import decision_probabilities
from gill_eval.models.gill.index import ImageIndex
from gill_eval.models.gill.interleaved import ImageBlock, InterleavedSettings, generate_interleaved
from gill_eval.models.gill.load import Sources, load_gill, resolve_sources
from gill_eval.models.gill.model import GILL, DecodeSettings, SDSettings
from gill_eval.models.pixels import require_finite
from gill_eval.models.sampler import SamplerOptions

_IMAGE_BATCH = 32


@dataclasses.dataclass
class GILLOptions(SamplerOptions):
    """Options of ``gill``: the SD sampler options shared with ``sd`` (``models.sampler``) and GILL's own.
    Empty component fields fall back to ``model_args.json`` / SD 1.5."""

    checkpoint: str = option("", "folder with pretrained_ckpt.pth.tar, model_args.json, decision_model.pth.tar "
                                 "(default: the staged 'gill-checkpoint' weight)")
    llm: str = option("", "OPT hub id or folder (default: model_args.json opt_version, facebook/opt-6.7b)")
    visual_encoder: str = option("", "CLIP hub id or folder (default: model_args.json visual_encoder, "
                                     "openai/clip-vit-large-patch14)")
    sd: str = option("", "Stable Diffusion hub id or folder (default: stable-diffusion-v1-5/stable-diffusion-v1-5)")
    precision: Literal["auto", "bf16", "fp32"] = option(
        "auto", "auto: bf16 LLM/CLIP/heads + fp16 SD on GPU (the official setting), fp32 on CPU")
    height: int = option(512, "image height in pixels (multiple of 8)")
    width: int = option(512, "image width in pixels (multiple of 8)")
    num_words: int = option(2, "decoding steps (the evaluations use 2)")
    gen_scale_factor: float = option(1e5, "[IMG0] logit rule |logit| x factor (1e5 forces generation)")
    device: str = option("auto", "torch device (default: cuda if available, else cpu)", runtime=True)
    device_map: str = option("", "transformers device_map for an LLM that does not fit one GPU: auto, balanced, "
                                 "sequential, or a JSON object module -> device",
                             runtime=True)
    batch_size: int = option(8, "contexts per LM/SD call (results do not depend on it)", runtime=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size < 1:
            raise ConfigError(f"option batch_size={self.batch_size}: must be at least 1")


@dataclasses.dataclass
class TinyGILLOptions(GILLOptions):
    """Options of ``tiny-gill``: the same knobs; the tiny SD draws 64x64 images."""

    checkpoint: str = option("", "tiny GILL folder (default: built on first use under the cache root)")
    height: int = option(64, "image height in pixels (multiple of 8)")
    width: int = option(64, "image width in pixels (multiple of 8)")


class GILLModel(Model):
    """GILL from the released checkpoint on current transformers/diffusers."""

    name = "gill"
    capabilities = frozenset({GENERATE, RETRIEVE, DECIDE, ACCEPTS_IMAGES, TEXT})
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
                                   device_map=self.options.device_map, scheduler=self.options.scheduler_class())
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

    def _chunks(self, items: Sequence[Any], label: str) -> Iterator[Sequence[Any]]:
        """``items`` in chunks of ``batch_size`` (each one batched call; results do not depend on it)."""
        size = self.options.batch_size
        return track([items[i:i + size] for i in range(0, len(items), size)], label)

    def generate(self, contexts: Sequence[Context], seeds: Sequence[int]) -> list[Image.Image]:
        self.check_generate_args(contexts, seeds)
        gill, decode, sd = self.gill, self.decode_settings(), self.sd_settings()
        images: list[Image.Image | None] = []
        nsfw = 0
        for chunk in self._chunks(list(zip(contexts, seeds)), "GILL generate"):
            blocks = gill.forced_img_states_batch([context for context, _ in chunk], decode)
            made, flags = gill.sd_images(gill.prompt_embeds(blocks), [cpu_generator(seed) for _, seed in chunk], sd)
            images += made
            nsfw += sum(flags)
        self.last_run_stats = {"contexts": len(images), "nsfw_flagged": nsfw}
        return require_finite(self.name, images, gill.sd_non_finite_cause())

    def embed_queries(self, contexts: Sequence[Context]) -> np.ndarray:
        # FROMAGe's query layout, which Table 5 follows (docs/protocols.md): not the decoding path above
        gill = self.gill
        rows = [gill.retrieval_queries(gill.retrieval_states_batch(chunk))
                for chunk in self._chunks(list(contexts), "GILL queries")]
        self.last_run_stats = {"contexts": len(contexts)}
        return np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, gill.heads.dims.ret_emb_dim),
                                                                              np.float32)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        gill = self.gill
        chunks = [gill.retrieval_images(images[i:i + _IMAGE_BATCH]) for i in range(0, len(images), _IMAGE_BATCH)]
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, gill.heads.dims.ret_emb_dim),
                                                                                  np.float32)

    def generate_text(self, contexts: Sequence[Context], seeds: Sequence[int], max_new_tokens: int) -> list[str]:
        # greedy with a KV cache, [IMG] never emitted (gill_eval.models.gill.text); seeds are unused: greedy
        from gill_eval.models.gill.text import decode_answer, greedy_text_ids

        self.check_text_args(contexts, seeds, max_new_tokens)
        gill, answers, tokens = self.gill, [], 0
        for chunk in self._chunks(list(contexts), "GILL text"):
            for ids in greedy_text_ids(gill, [gill.embed_context(c) for c in chunk], max_new_tokens):
                answers.append(decode_answer(gill, ids))
                tokens += len(ids)
        self.last_run_stats = {"contexts": len(answers), "new_tokens": tokens, "decoding": "greedy"}
        return answers

    def decision_features(self, prompts: Sequence[str]) -> np.ndarray:
        gill, decode = self.gill, self.decode_settings()
        rows = [gill.forced_img_states_batch([[p] for p in chunk], decode)[:, 0].float().cpu().numpy()
                for chunk in self._chunks(list(prompts), "GILL decision features")]
        return np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, gill.heads.dims.lm_dim),
                                                                              np.float32)

    def generate_interleaved(self, context: Context, seed: int, settings: InterleavedSettings | None = None,
                             index: ImageIndex | None = None) -> list[str | ImageBlock]:
        """GILL's own answer to ``context`` (text, retrieved and generated images, decisions): the official
        ``generate_for_images_and_texts``; see ``gill_eval.models.gill.interleaved``."""
        self.check_context(context)
        return generate_interleaved(self.gill, context, settings or InterleavedSettings(), self.sd_settings(), seed,
                                    index)

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

