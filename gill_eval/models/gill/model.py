"""The assembled GILL: interleaved context embedding, greedy decoding with the [IMG] rules, the SD call.

Everything here follows spec §4 and works on already-built components, so the real loader (``load``),
the tiny GILL and the real-size benchmark (random weights) share it. Contexts are processed one at a
time (batch size 1), as the official code does: the [IMG] forcing rule is only defined for batch size 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from gill_eval.errors import ConfigError, GillEvalError, InputError
from gill_eval.models.gill.mapper import GILLHeads
from gill_eval.models.gill.tokenizer import NUM_IMG_TOKENS, GillTokens, text_ids


@dataclass(frozen=True)
class DecodeSettings:
    """The decoding options of ``generate_for_images_and_texts`` that the evaluations use.

    Evaluations: ``num_words=2``, ``gen_scale_factor=1e5`` (so step 0 emits the whole [IMG] block and
    step 1 computes its hidden states). Decoding is greedy (temperature 0), as in every evaluation.
    """

    num_words: int = 2
    gen_scale_factor: float = 1e5
    ret_scale_factor: float = 1.0
    min_word_tokens: int = 0


@dataclass(frozen=True)
class SDSettings:
    """The Stable Diffusion call: ``guidance_scale=7.5``, 50 steps, 512x512 (the pipeline's scheduler)."""

    guidance: float = 7.5
    steps: int = 50
    height: int = 512
    width: int = 512


@dataclass
class Decoded:
    """Generated ids and the final step's hidden states from the prompt end on (spec §4.3)."""

    ids: list[int]
    hidden: torch.Tensor  # (1, G', D): states of the generated tokens fed back before the last step


def install_img_rows(lm: nn.Module, tokens: GillTokens, rows: torch.Tensor) -> None:
    """Resize the LM's vocabulary to ``tokens.vocab_size`` and write the 8 [IMG] rows (spec §1.3).

    OPT ties ``lm_head`` to the input embedding, so the rows written here are also the rows that score
    [IMG0..7]; an untied LM would score them with random rows, so it is rejected.
    """
    lm.resize_token_embeddings(tokens.vocab_size, mean_resizing=False)
    embed = lm.get_input_embeddings()
    if lm.get_output_embeddings().weight is not embed.weight:
        raise InputError("the LM's output projection is not tied to its input embedding "
                         "(GILL's [IMG] rows must score the [IMG] logits; OPT ties them by default)")
    with torch.no_grad():
        ids = torch.tensor(tokens.img_ids, device=embed.weight.device)
        embed.weight[ids] = rows.to(device=embed.weight.device, dtype=embed.weight.dtype)


class GILL:
    """GILL's inference: OPT + CLIP vision + the trained heads (+ SD for generation, + the decision MLP).

    ``sd_loader`` is a zero-argument callable that builds the SD pipeline: Stable Diffusion is loaded only
    when an image is generated, so retrieval and decision features do not pay for it.
    """

    def __init__(
        self,
        lm: nn.Module,
        tokenizer: Any,
        tokens: GillTokens,
        vision: nn.Module,
        image_processor: Any,
        heads: GILLHeads,
        sd_loader: Callable[[], Any] | None = None,
        decision: nn.Module | None = None,
    ) -> None:
        self.lm = lm
        self.tokenizer = tokenizer
        self.tokens = tokens
        self.vision = vision
        self.image_processor = image_processor
        self.heads = heads
        self._sd_loader = sd_loader
        self._sd: Any = None
        self.decision = decision
        head_param = next(heads.parameters())
        self.device, self.dtype = head_param.device, head_param.dtype

    # ------------------------------------------------------------------------------------------ parts

    @property
    def embedding(self) -> nn.Embedding:
        """The LM's input embedding (rows 50266..50273 are the checkpoint's [IMG] rows)."""
        return self.lm.get_input_embeddings()

    @property
    def sd_pipe(self) -> Any:
        """The Stable Diffusion pipeline, built on first use."""
        if self._sd is None:
            if self._sd_loader is None:
                raise GillEvalError("this GILL instance has no Stable Diffusion pipeline")
            self._sd = self._sd_loader()
        return self._sd

    @torch.no_grad()
    def embed_ids(self, ids: Sequence[int]) -> torch.Tensor:
        """(1, len(ids), D) input embeddings on the heads' device."""
        weight = self.embedding.weight
        index = torch.tensor(list(ids), dtype=torch.long, device=weight.device)
        return self.embedding(index).unsqueeze(0).to(self.device)

    @torch.no_grad()
    def clip_pooled(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """CLIP vision ``pooler_output`` (N, clip_dim): post-LN CLS, not the projected image_embeds."""
        pixels = self.image_processor(images=[im.convert("RGB") for im in images], return_tensors="pt").pixel_values
        vision_param = next(self.vision.parameters())
        out = self.vision(pixel_values=pixels.to(device=vision_param.device, dtype=vision_param.dtype))
        return out.pooler_output.to(device=self.device, dtype=self.dtype)

    # ------------------------------------------------------------------------------ context and LM

    @torch.no_grad()
    def embed_context(self, context: Sequence[Any]) -> torch.Tensor:
        """(1, P, D) LM input for an interleaved context (spec §4.2).

        Each image becomes its 4 visual tokens at its own position; each text segment is tokenized
        separately and only the first one gets BOS, even when an image comes first. No separators.
        """
        parts: list[torch.Tensor] = []
        add_bos = True
        for index, item in enumerate(context):
            if isinstance(item, Image.Image):
                parts.append(self.heads.visual_tokens(self.clip_pooled([item])))
            elif isinstance(item, str):
                ids = text_ids(self.tokenizer, item, add_bos, self.tokens.bos_id)
                add_bos = False
                if ids:
                    parts.append(self.embed_ids(ids))
            else:
                raise InputError(f"context item {index} is a {type(item).__name__}, expected str or PIL image")
        if add_bos:
            raise InputError("GILL needs at least one text item in a context (the official code fails without)")
        return torch.cat(parts, dim=1)

    @torch.no_grad()
    def lm_forward(self, embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Final hidden states (1, T, D) and last-position logits (V,).

        The state is the decoder's ``last_hidden_state`` (after ``final_layer_norm``), which is what
        ``hidden_states[-1]`` was in transformers 4.30; positions are 0..T-1 (no attention mask).
        """
        decoder = self.lm.model.decoder  # OPTDecoder: its output is after final_layer_norm
        limit = self.lm.config.max_position_embeddings
        if embeds.shape[1] > limit:
            raise InputError(f"the context needs {embeds.shape[1]} LM positions, more than the LM's {limit}")
        first = self.embedding.weight
        hidden = decoder(inputs_embeds=embeds.to(device=first.device, dtype=first.dtype),
                         use_cache=False).last_hidden_state
        logits = self.lm.get_output_embeddings()(hidden[:, -1])[0]
        return hidden.to(self.device), logits

    @torch.no_grad()
    def decode(self, prefix: torch.Tensor, settings: DecodeSettings) -> Decoded:
        """Greedy decoding with GILL's [IMG] rules, recomputing the full sequence each step (spec §4.3).

        Every step: [IMG1..7] logits -> -inf; then either all [IMG] -> -inf (before ``min_word_tokens``)
        or logit[IMG0] = |logit[IMG0]| x factor for each factor > 1 (ret, then gen). Choosing [IMG0]
        emits the whole block [IMG0..7] in that step. No EOS stop: always ``num_words`` steps.
        """
        if settings.num_words < 1:
            raise ConfigError("num_words must be at least 1")
        img = self.tokens.img_ids
        embeds, ids = prefix, []
        hidden = prefix[:, :0]
        for step in range(settings.num_words):
            hidden, logits = self.lm_forward(embeds)
            logits = logits.clone()
            logits[list(img[1:])] = float("-inf")
            if step < settings.min_word_tokens:
                logits[list(img)] = float("-inf")
            else:
                for factor in (settings.ret_scale_factor, settings.gen_scale_factor):
                    if factor > 1:
                        logits[img[0]] = logits[img[0]].abs() * factor
            token = int(torch.argmax(logits))
            new = list(img) if token == img[0] else [token]
            ids += new
            embeds = torch.cat([embeds, self.embed_ids(new).to(embeds.dtype)], dim=1)
        return Decoded(ids=ids, hidden=hidden[:, prefix.shape[1]:])

    def img_block(self, decoded: Decoded) -> torch.Tensor | None:
        """The (1, 8, D) states of the first [IMG] block after newline truncation, or None (spec §4.4).

        Raises when the block was chosen on the last step, so no forward pass computed its states (the
        official code fails there too).
        """
        ids, hidden = decoded.ids, decoded.hidden
        if self.tokens.newline_id in ids:
            j = ids.index(self.tokens.newline_id)
            if j > 0:  # a newline at 0 truncates nothing (official quirk)
                ids, hidden = ids[:j], hidden[:, :j]
        img = self.tokens.img_ids
        if img[0] not in ids:
            return None
        r = ids.index(img[0])
        if tuple(ids[r:r + NUM_IMG_TOKENS]) != img:
            raise GillEvalError(f"decoded [IMG0] at {r} is not followed by [IMG1..7]: {ids[r:r + NUM_IMG_TOKENS]}")
        if hidden.shape[1] < r + NUM_IMG_TOKENS:
            raise GillEvalError("the [IMG] block was emitted on the last decoding step, so its hidden states "
                                "were never computed; raise num_words")
        return hidden[:, r:r + NUM_IMG_TOKENS]

    def forced_img_states(self, context: Sequence[Any], settings: DecodeSettings) -> torch.Tensor:
        """(1, 8, D) [IMG] states for a context; an error (never a silent fallback) if none was emitted."""
        block = self.img_block(self.decode(self.embed_context(context), settings))
        if block is None:
            raise GillEvalError(f"GILL emitted no [IMG] tokens in {settings.num_words} steps "
                                f"(gen_scale_factor={settings.gen_scale_factor:g})")
        return block

    # ------------------------------------------------------------------------------------ outputs

    @torch.no_grad()
    def prompt_embeds(self, block: torch.Tensor) -> torch.Tensor:
        """GILLMapper(h[IMG], E[IMG]) -> (1, 77, gen_emb_dim) for SD's ``prompt_embeds``."""
        return self.heads.generation(block, self.embed_ids(self.tokens.img_ids).to(block.dtype))

    @torch.no_grad()
    def retrieval_query(self, block: torch.Tensor) -> np.ndarray:
        """L2-normalised retrieval embedding (ret_emb_dim,) of the [IMG0] state, float32."""
        vec = self.heads.retrieval_text(block)[0].float()
        return torch.nn.functional.normalize(vec, dim=-1).cpu().numpy()

    @torch.no_grad()
    def retrieval_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """L2-normalised ``visual_fc`` of the CLIP pooled output (N, ret_emb_dim), float32."""
        vec = self.heads.retrieval_image(self.clip_pooled(images)).float()
        return torch.nn.functional.normalize(vec, dim=-1).cpu().numpy()

    @torch.no_grad()
    def sd_image(self, prompt_embeds: torch.Tensor, generator: torch.Generator,
                 settings: SDSettings) -> tuple[Image.Image, bool]:
        """One image from stock diffusers with ``prompt_embeds`` (the empty prompt is the unconditional),
        and whether SD's safety checker (when the pipeline has one, as the official one did) blacked it out."""
        pipe = self.sd_pipe
        out = pipe(prompt_embeds=prompt_embeds.to(device=pipe.device, dtype=pipe.unet.dtype), generator=generator,
                   guidance_scale=settings.guidance, num_inference_steps=settings.steps,
                   height=settings.height, width=settings.width)
        flags = out.nsfw_content_detected or [False]
        return out.images[0], bool(flags[0])
