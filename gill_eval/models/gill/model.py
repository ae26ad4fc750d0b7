"""The assembled GILL: interleaved context embedding, greedy decoding with the [IMG] rules, the SD call.

Everything here follows spec §4 and works on already-built components, so the real loader (``load``),
the tiny GILL and the real-size benchmark (random weights) share it.

Batches (docs/protocols.md, "Batched GILL"): the official code decodes one context at a time (its [IMG]
forcing rule is only defined for batch size 1). ``decode_batch`` keeps every context's computation exactly
that of batch 1: at each step the contexts whose sequences have the same length are stacked into one LM
call (no padding, no attention mask, so every row sees the same positions and values as alone), and the
token rule runs per row. The mapper and the retrieval head work row by row on (B, 8, D); Stable Diffusion
runs the batch with one CPU generator per image. Outputs therefore do not depend on batch size or order.

On CPU (fp32) this holds bit for bit, which takes two measures (``cpu_exact``): MKL computes a GEMM row
differently when the matrix has fewer than 4 rows, so a call with fewer rows is padded with repeated rows
that are then dropped; and oneDNN / NNPACK convolutions choose batch-dependent blockings, so the SD call
runs on PyTorch's native per-sample convolution. On GPUs batched kernels may round differently from batch
1 (cuBLAS/cuDNN choose kernels by shape); the initial noise is still per image, so images agree to float
rounding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from gill_eval.errors import ConfigError, GillEvalError, InputError
from gill_eval.models.gill.mapper import GILLHeads
from gill_eval.models.gill.tokenizer import IMG_TOKENS, NUM_IMG_TOKENS, GillTokens, text_ids
from gill_eval.models.pixels import finite_pil, non_finite_cause
from gill_eval.resizes import squash_224


#: The fewest rows for which a CPU GEMM computes each row as in any larger matrix (see the module doc).
MIN_GEMM_ROWS = 4


@contextlib.contextmanager
def cpu_exact(device: torch.device) -> Iterator[None]:
    """On CPU, convolutions per sample (no oneDNN/NNPACK batch blocking), so a batch equals single calls."""
    if device.type != "cpu":
        yield
        return
    previous = torch.backends.mkldnn.enabled  # set directly: mkldnn.flags() warns about TF32 on every call
    torch.backends.mkldnn.enabled = False
    try:
        with torch.backends.nnpack.flags(enabled=False):
            yield
    finally:
        torch.backends.mkldnn.enabled = previous


def pad_rows(batch: torch.Tensor, min_rows: int) -> torch.Tensor:
    """``batch`` with its last row repeated until it has ``min_rows`` rows (callers drop the extra outputs)."""
    extra = min_rows - batch.shape[0]
    return torch.cat([batch, batch[-1:].expand(extra, *batch.shape[1:])]) if extra > 0 else batch


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
    temperature: float = 0.0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if self.num_words < 1:
            raise ConfigError(f"num_words={self.num_words}: must be at least 1")
        if self.temperature < 0:
            raise ConfigError(f"temperature={self.temperature}: must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p={self.top_p}: must be in (0, 1]")
        if self.temperature == 0 and self.top_p != 1:
            raise ConfigError("top_p < 1 needs temperature > 0 (temperature 0 is greedy decoding, as official)")


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
        # Squashed to 224x224 first, as every official GILL/FROMAGe input is (docs/protocols.md): the
        # processor's centre crop then cuts nothing.
        pixels = self.image_processor(images=[squash_224(im) for im in images], return_tensors="pt").pixel_values
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
    def lm_forward_batch(self, embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Final hidden states (B, T, D) and last-position logits (B, V) of B sequences of equal length T.

        The state is the decoder's ``last_hidden_state`` (after ``final_layer_norm``), which is what
        ``hidden_states[-1]`` was in transformers 4.30; positions are 0..T-1 (no attention mask).
        """
        decoder = self.lm.model.decoder  # OPTDecoder: its output is after final_layer_norm
        limit = self.lm.config.max_position_embeddings
        if embeds.shape[1] > limit:
            raise InputError(f"the context needs {embeds.shape[1]} LM positions, more than the LM's {limit}")
        first = self.embedding.weight
        rows, length = embeds.shape[:2]
        cpu = first.device.type == "cpu"
        if cpu:  # at least MIN_GEMM_ROWS rows in every GEMM: B x T in the decoder, B in the logits
            embeds = pad_rows(embeds, -(-MIN_GEMM_ROWS // length))
        hidden = decoder(inputs_embeds=embeds.to(device=first.device, dtype=first.dtype),
                         use_cache=False).last_hidden_state[:rows]
        last = pad_rows(hidden[:, -1], MIN_GEMM_ROWS) if cpu else hidden[:, -1]
        logits = self.lm.get_output_embeddings()(last)[:rows]
        return hidden.to(self.device), logits

    def lm_forward(self, embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``lm_forward_batch`` of one sequence: hidden (1, T, D) and last-position logits (V,)."""
        hidden, logits = self.lm_forward_batch(embeds)
        return hidden, logits[0]

    def next_ids(self, logits: torch.Tensor, step: int, settings: DecodeSettings,
                 generator: torch.Generator | None = None) -> list[int]:
        """GILL's token rule on one row of last-position logits (V,); [IMG0] emits the whole block.

        [IMG1..7] -> -inf; then all [IMG] -> -inf before ``min_word_tokens``, else logit[IMG0] =
        |logit[IMG0]| x factor for each factor > 1 (ret, then gen). Temperature 0: argmax. Otherwise the
        logits are divided by the temperature, nucleus-filtered (``top_p``: the smallest set reaching
        ``top_p``, the first token above it kept) and sampled with ``generator`` (one per example, instead of
        the official global RNG); sampling uses the softmax, the distribution the official ``exp`` weights
        define, without their overflow to inf when a scaled [IMG0] logit is large.
        """
        img = self.tokens.img_ids
        logits = logits.clone()
        logits[list(img[1:])] = float("-inf")
        if step < settings.min_word_tokens:
            logits[list(img)] = float("-inf")
        else:
            for factor in (settings.ret_scale_factor, settings.gen_scale_factor):
                if factor > 1:
                    logits[img[0]] = logits[img[0]].abs() * factor
        if settings.temperature == 0:
            token = int(torch.argmax(logits))
        else:
            if generator is None:
                raise ConfigError("temperature > 0 samples tokens: give one generator per context")
            scaled = logits.float().cpu() / settings.temperature
            if settings.top_p < 1:
                ordered, order = torch.sort(scaled, descending=True)
                remove = torch.cumsum(torch.softmax(ordered, dim=-1), dim=-1) > settings.top_p
                remove[1:] = remove[:-1].clone()
                remove[0] = False
                scaled[order[remove]] = float("-inf")
            token = int(torch.multinomial(torch.softmax(scaled, dim=-1), 1, generator=generator))
        return list(img) if token == img[0] else [token]

    @torch.no_grad()
    def decode_batch(self, prefixes: Sequence[torch.Tensor], settings: DecodeSettings,
                     generators: Sequence[torch.Generator] | None = None) -> list[Decoded]:
        """``decode`` of several (1, P_i, D) prefixes; each result equals decoding that prefix alone.

        Every step groups the sequences of equal current length into one LM call (no padding), so each row
        is computed exactly as at batch size 1; the token rule and sampling run per row.
        """
        if generators is not None and len(generators) != len(prefixes):
            raise GillEvalError(f"{len(prefixes)} contexts but {len(generators)} generators")
        embeds = list(prefixes)
        ids: list[list[int]] = [[] for _ in prefixes]
        hidden = [prefix[:, :0] for prefix in prefixes]
        for step in range(settings.num_words):
            for i, (states, logits) in enumerate(self.forward_grouped(embeds)):
                hidden[i] = states
                new = self.next_ids(logits, step, settings, generators[i] if generators else None)
                ids[i] += new
                embeds[i] = torch.cat([embeds[i], self.embed_ids(new).to(embeds[i].dtype)], dim=1)
        return [Decoded(ids=ids[i], hidden=hidden[i][:, prefix.shape[1]:]) for i, prefix in enumerate(prefixes)]

    @torch.no_grad()
    def forward_grouped(self, embeds: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``lm_forward`` of each (1, T_i, D) sequence; sequences of equal length share one LM call."""
        groups: dict[int, list[int]] = {}
        for i, seq in enumerate(embeds):
            groups.setdefault(seq.shape[1], []).append(i)
        out: list[Any] = [None] * len(embeds)
        for rows in groups.values():
            states, logits = self.lm_forward_batch(torch.cat([embeds[i] for i in rows]))
            for r, i in enumerate(rows):
                out[i] = (states[r:r + 1], logits[r])
        return out

    def decode(self, prefix: torch.Tensor, settings: DecodeSettings,
               generator: torch.Generator | None = None) -> Decoded:
        """Decoding with GILL's [IMG] rules, recomputing the full sequence each step (spec §4.3).

        The token rule is ``next_ids``. No EOS stop: always ``num_words`` steps.
        """
        return self.decode_batch([prefix], settings, None if generator is None else [generator])[0]

    def img_block(self, decoded: Decoded) -> torch.Tensor | None:
        """The (1, 8, D) states of the first [IMG] block after newline truncation, or None (spec §4.4).

        Raises when the block was chosen on the last step, so no forward pass computed its states (the
        official code fails there too).
        """
        decoded = self.until_newline(decoded)
        if self.tokens.img_ids[0] not in decoded.ids:
            return None
        return self.block_states(decoded, decoded.ids.index(self.tokens.img_ids[0]))

    def until_newline(self, decoded: Decoded) -> Decoded:
        """The ids and states cut before the first newline (a newline at 0 cuts nothing: official quirk)."""
        ids, hidden = decoded.ids, decoded.hidden
        if self.tokens.newline_id in ids:
            j = ids.index(self.tokens.newline_id)
            if j > 0:
                ids, hidden = ids[:j], hidden[:, :j]
        return Decoded(ids=ids, hidden=hidden)

    def block_states(self, decoded: Decoded, r: int) -> torch.Tensor:
        """The (1, 8, D) states of the [IMG] block starting at position ``r`` of ``decoded``."""
        ids, hidden, img = decoded.ids, decoded.hidden, self.tokens.img_ids
        if tuple(ids[r:r + NUM_IMG_TOKENS]) != img:
            raise GillEvalError(f"decoded [IMG0] at {r} is not followed by [IMG1..7]: {ids[r:r + NUM_IMG_TOKENS]}")
        if hidden.shape[1] < r + NUM_IMG_TOKENS:
            raise GillEvalError("the [IMG] block was emitted on the last decoding step, so its hidden states "
                                "were never computed; raise num_words")
        return hidden[:, r:r + NUM_IMG_TOKENS]

    def forced_img_states_batch(self, contexts: Sequence[Sequence[Any]], settings: DecodeSettings) -> torch.Tensor:
        """(B, 8, D) [IMG] states of B contexts, each as computed alone; an error (never a silent
        fallback) if a context emitted none."""
        decoded = self.decode_batch([self.embed_context(c) for c in contexts], settings)
        blocks = []
        for index, item in enumerate(decoded):
            block = self.img_block(item)
            if block is None:
                raise GillEvalError(f"GILL emitted no [IMG] tokens for context {index} in {settings.num_words} "
                                    f"steps (gen_scale_factor={settings.gen_scale_factor:g})")
            blocks.append(block)
        return torch.cat(blocks)

    def forced_img_states(self, context: Sequence[Any], settings: DecodeSettings) -> torch.Tensor:
        """(1, 8, D) [IMG] states for one context (``forced_img_states_batch`` of one)."""
        return self.forced_img_states_batch([context], settings)

    # ------------------------------------------------------------------------------------ outputs

    @torch.no_grad()
    def prompt_embeds(self, block: torch.Tensor) -> torch.Tensor:
        """GILLMapper(h[IMG], E[IMG]) -> (B, 77, gen_emb_dim) for SD's ``prompt_embeds``; rows independent.

        On CPU the batch is padded to ``MIN_GEMM_ROWS`` rows: the mapper's attention projects its
        sequence-first (T, B, C) inputs as T matrix products of B rows each, which MKL computes differently
        below 4 rows (a batch of 2 or 3 gave prompt embeddings 6e-7 away from batch 1 or 4).
        """
        rows = block.shape[0]
        if self.device.type == "cpu":
            block = pad_rows(block, MIN_GEMM_ROWS)
        embs = self.embed_ids(self.tokens.img_ids).to(block.dtype).expand(block.shape[0], -1, -1)
        return self.heads.generation(block, embs)[:rows]

    @torch.no_grad()
    def embed_retrieval_context(self, context: Sequence[Any]) -> torch.Tensor:
        """(1, P, D) LM input of FROMAGe's retrieval protocol, which GILL's Table 5 follows (docs/protocols.md).

        Unlike ``embed_context``, every text item is tokenized with its own BOS, and the last item (a
        caption) carries the [IMG0..7] tokens appended to its text; images are their visual tokens in place.
        """
        if not context or not isinstance(context[-1], str):
            raise InputError("a retrieval query must end with a caption (the retrieval tokens follow it)")
        parts: list[torch.Tensor] = []
        for index, item in enumerate(context):
            if isinstance(item, Image.Image):
                parts.append(self.heads.visual_tokens(self.clip_pooled([item])))
            elif isinstance(item, str):
                last = index == len(context) - 1
                ids = text_ids(self.tokenizer, item + ("".join(IMG_TOKENS) if last else ""), True, self.tokens.bos_id)
                if last and tuple(ids[-NUM_IMG_TOKENS:]) != self.tokens.img_ids:
                    raise GillEvalError(f"the retrieval tokens after {item[-20:]!r} tokenized to "
                                        f"{ids[-NUM_IMG_TOKENS:]}")
                parts.append(self.embed_ids(ids))
            else:
                raise InputError(f"context item {index} is a {type(item).__name__}, expected str or PIL image")
        return torch.cat(parts, dim=1)

    def retrieval_states(self, context: Sequence[Any]) -> torch.Tensor:
        """(1, 8, D) final states of the [IMG] tokens of ``embed_retrieval_context``: one forward pass."""
        return self.retrieval_states_batch([context])

    def retrieval_states_batch(self, contexts: Sequence[Sequence[Any]]) -> torch.Tensor:
        """(B, 8, D) ``retrieval_states`` of B contexts, each as computed alone (``forward_grouped``)."""
        outs = self.forward_grouped([self.embed_retrieval_context(c) for c in contexts])
        return torch.cat([hidden[:, -NUM_IMG_TOKENS:] for hidden, _ in outs])

    @torch.no_grad()
    def retrieval_queries(self, blocks: torch.Tensor) -> np.ndarray:
        """L2-normalised retrieval embeddings (B, ret_emb_dim) of the [IMG0] states, float32.

        Normalised in the heads' dtype (bf16 in the official setting), as gill/models.py does.
        """
        vec = self.heads.retrieval_text(blocks)
        return (vec / vec.norm(dim=-1, keepdim=True)).float().cpu().numpy()

    @torch.no_grad()
    def retrieval_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """L2-normalised ``visual_fc`` of the CLIP pooled output (N, ret_emb_dim), float32.

        Normalised in the heads' dtype, as the official candidate matrix is (bf16 in the official setting).
        On CPU ``visual_fc`` gets at least ``MIN_GEMM_ROWS`` rows, so an image's row does not depend on how
        many images share the call (the last chunk of a candidate set may hold 1 to 3). The CLIP pass needs
        nothing: its products have 257 rows per image, and its oneDNN patch convolution is exact per sample
        (PyTorch's native one, which ``cpu_exact`` selects, is not).
        """
        vec = self.retrieval_image_vectors(self.clip_pooled(images))
        return (vec / vec.norm(dim=-1, keepdim=True)).float().cpu().numpy()

    @torch.no_grad()
    def retrieval_image_vectors(self, pooled: torch.Tensor) -> torch.Tensor:
        """The checkpoint's ``visual_fc`` of CLIP pooled outputs (N, ret_emb_dim), in the heads' dtype, not
        normalised; on CPU computed over at least ``MIN_GEMM_ROWS`` rows (``retrieval_images``)."""
        rows = pooled.shape[0]
        padded = pad_rows(pooled, MIN_GEMM_ROWS) if pooled.device.type == "cpu" else pooled
        return self.heads.retrieval_image(padded)[:rows]

    @torch.no_grad()
    def sd_images(self, prompt_embeds: torch.Tensor, generators: Sequence[torch.Generator],
                  settings: SDSettings) -> tuple[list[Image.Image | None], list[bool]]:
        """B images from stock diffusers with ``prompt_embeds`` (B, 77, C) in one pipeline call (the empty
        prompt is the unconditional), one generator per image, and whether SD's safety checker (when the
        pipeline has one, as the official one did) blacked each out. An image with NaN/inf pixels is None
        (``pixels.finite_pil``; ``sd_non_finite_cause`` says why)."""
        if len(generators) != prompt_embeds.shape[0]:
            raise GillEvalError(f"{prompt_embeds.shape[0]} prompt embeddings but {len(generators)} generators")
        pipe = self.sd_pipe
        count, generators = prompt_embeds.shape[0], list(generators)
        if pipe.device.type == "cpu":  # classifier-free guidance doubles the rows of the UNet's GEMMs
            min_rows = -(-MIN_GEMM_ROWS // (2 if settings.guidance > 1 else 1))
            prompt_embeds = pad_rows(prompt_embeds, min_rows)
            generators += [torch.Generator().manual_seed(0) for _ in range(prompt_embeds.shape[0] - count)]
        with cpu_exact(pipe.device):
            out = pipe(prompt_embeds=prompt_embeds.to(device=pipe.device, dtype=pipe.unet.dtype),
                       generator=generators, guidance_scale=settings.guidance,
                       num_inference_steps=settings.steps, height=settings.height, width=settings.width,
                       output_type="np")
        flags = out.nsfw_content_detected or [False] * len(out.images)
        return finite_pil(out.images[:count]), [bool(flag) for flag in flags][:count]

    def sd_non_finite_cause(self) -> str:
        """What a None (NaN/inf) image of ``sd_images`` means and its fix (docs/reliability.md)."""
        fp16 = self.sd_pipe.unet.dtype == torch.float16
        return non_finite_cause("precision=fp32" if fp16 else None, getattr(self.sd_pipe, "name_or_path", None))

    def sd_image(self, prompt_embeds: torch.Tensor, generator: torch.Generator,
                 settings: SDSettings) -> tuple[Image.Image | None, bool]:
        """``sd_images`` of one (1, 77, C) embedding."""
        images, flags = self.sd_images(prompt_embeds, [generator], settings)
        return images[0], flags[0]
