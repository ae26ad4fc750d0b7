"""Tiny, seeded, random-initialised models with the real architectures, for tests and the quickstart.

No weights can be downloaded in CI, so every code path that loads real weights is exercised with these:
they are saved in the same on-disk formats as the real ones (an open_clip weights file and config, a
diffusers ``save_pretrained`` folder) and loaded back through ``gill_eval.models.weights``' loaders.
Their outputs are meaningless numbers: never report them as results.

Each builder caches its folder under ``cache_root()/tiny/<kind>-seed<seed>`` (or ``root``), building it
once into a temporary folder that is renamed into place, so concurrent test processes are safe.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch


if TYPE_CHECKING:
    from transformers import CLIPTokenizer

#: The tiny open_clip architecture: a 2-layer ViT (32x32 images, 8x8 patches) and a 2-layer text tower
#: with CLIP's real vocabulary and context length, QuickGELU like the OpenAI weights.
TINY_CLIP_CFG: dict = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
TINY_CLIP_NAME = "gill-tiny-clip"
TINY_CLIP_WEIGHTS = "open_clip_model.safetensors"
#: Default open_clip preprocessing (OpenAI mean/std, bicubic resize of the shortest side, centre crop).
_PREPROCESS_CFG = {
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}
_BUILD_VERSION = 3  # bump when a builder changes, so stale caches are not reused


def build_clip_tokenizer() -> CLIPTokenizer:
    """An HF ``CLIPTokenizer`` equal to SD's, built offline from open_clip's bundled BPE file.

    Vocabulary: the 256 byte-unicode symbols, the same with ``</w>``, the first 48,894 merges joined, then
    ``<|startoftext|>`` (49406) and ``<|endoftext|>`` (49407, also the pad token), 49,408 entries;
    ``model_max_length=77`` so ``padding="max_length"`` pads to 77 with 49407 as SD 1.x does.
    """
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    with gzip.open(default_bpe(), "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    symbols = list(bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(vocab_list)}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def cached_build(kind: str, root: Path | None, seed: int, build: Callable[[Path], None]) -> Path:
    """Build into a temp folder beside the target and rename it into place; reuse it if present."""
    from gill_eval.store.root import cache_root  # here, so benchmarks can use the tokenizer without pyarrow

    base = Path(root) if root is not None else cache_root() / "tiny"
    target = base / f"{kind}-v{_BUILD_VERSION}-seed{seed}"
    if (target / ".complete").is_file():
        return target
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{kind}-", dir=base))
    try:
        build(tmp)
        (tmp / ".complete").write_text("ok\n")
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process renamed its complete build first: keep theirs.
            if not (target / ".complete").is_file():
                raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    return target


def tiny_clip_dir(root: Path | None = None, seed: int = 0) -> Path:
    """A folder with a seeded tiny open_clip CLIP (QuickGELU) saved like real open_clip weights.

    Contents: ``open_clip_model.safetensors`` (the weights), ``gill-tiny-clip.json`` (the bare model
    config: like the built-in ``ViT-L-14`` config it does not state QuickGELU), and
    ``open_clip_config.json`` (model config with ``quick_gelu: true`` plus preprocessing).
    Load it either way, both give the same model:

    * as a weights file, the path used for a local copy of the OpenAI weights::

          load_open_clip(model_name=str(d / "gill-tiny-clip.json"), pretrained=str(d / TINY_CLIP_WEIGHTS))

    * as an open_clip folder: ``load_open_clip(pretrained=str(d))``.
    """

    def build(folder: Path) -> None:
        from open_clip.model import CLIP
        from safetensors.torch import save_file

        torch.manual_seed(seed)
        model = CLIP(**TINY_CLIP_CFG, quick_gelu=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / TINY_CLIP_WEIGHTS))
        (folder / f"{TINY_CLIP_NAME}.json").write_text(json.dumps(TINY_CLIP_CFG, indent=2))
        full = {"model_cfg": {**TINY_CLIP_CFG, "quick_gelu": True}, "preprocess_cfg": _PREPROCESS_CFG}
        (folder / "open_clip_config.json").write_text(json.dumps(full, indent=2))

    return cached_build("clip", root, seed, build)


def tiny_text_encoder(seed: int = 0):  # -> CLIPTextModel
    """The tiny SD text encoder (hidden 32, 2 layers, 4 heads, CLIP's vocabulary and 77 positions)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=77, bos_token_id=49406,
                            eos_token_id=49407, pad_token_id=49407)
    return CLIPTextModel(config).eval()


def build_tiny_sd_pipeline(seed: int = 0):  # -> StableDiffusionPipeline
    """diffusers' own ``StableDiffusionPipeline`` from the tiny components (64x64 images)."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"], latent_channels=4,
    )
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    return StableDiffusionPipeline(
        vae=vae, text_encoder=tiny_text_encoder(seed), tokenizer=build_clip_tokenizer(), unet=unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def tiny_sd_dir(root: Path | None = None, seed: int = 0) -> Path:
    """A diffusers ``save_pretrained`` folder of the tiny SD pipeline (tokenizer, text encoder, UNet, VAE,
    PNDM scheduler; no safety checker).

    Load it with ``load_sd_pipeline(str(d))`` or, for features, ``load_sd_text_encoder(str(d))``.
    """

    def build(folder: Path) -> None:
        build_tiny_sd_pipeline(seed).save_pretrained(folder, safe_serialization=True)

    return cached_build("sd", root, seed, build)


#: The file of a GLIDE weights folder that changes GLIDE's default settings (tiny-glide's only;
#: models/glide/adapter.py reads it).
GLIDE_CONFIG = "glide_config.json"
#: Overrides of GLIDE's default settings (models/glide/config.py, glide-text2im's own:
#: ``BASE_DEFAULTS`` for ``base``, ``UPSAMPLE_DEFAULTS`` for ``upsample``) for the tiny GLIDE: the real 64x64
#: base architecture, tokenizer and 128-token context at small widths (32 channels: GLIDE's GroupNorm
#: needs 32 groups), and an upsampler to 128x128 instead of 256x256 so that it samples in seconds on a CPU.
TINY_GLIDE_OVERRIDES: dict[str, dict] = {
    "base": {"num_channels": 32, "num_res_blocks": 1, "channel_mult": "1,1,2,2", "num_head_channels": 32,
             "attention_resolutions": "8", "xf_width": 64, "xf_layers": 2, "xf_heads": 2},
    "upsample": {"image_size": 128, "num_channels": 32, "num_res_blocks": 1, "channel_mult": "1,1,1,2,2",
                 "num_head_channels": 32, "attention_resolutions": "8", "xf_width": 64, "xf_layers": 2,
                 "xf_heads": 2},
}


#: The text embeddings that the released weights set and the network leaves unset (zeros here).
GLIDE_UNINITIALISED = frozenset({"positional_embedding", "padding_embedding"})


def tiny_glide_dir(root: Path | None = None, seed: int = 0) -> Path:
    """A folder laid out like the staged official GLIDE weights (``base.pt``, ``upsample.pt``: state dicts
    written with ``torch.save``) plus ``glide_config.json`` with ``TINY_GLIDE_OVERRIDES``, built by gill-eval's
    own GLIDE. The parameters that are zero after construction (norm biases) and the text embeddings that
    only released weights set are drawn small and random, so that every weight matters.
    Load it with ``load_model("tiny-glide")`` or ``load_model("glide", {"weights": str(d)})``.
    """

    def build(folder: Path) -> None:
        from gill_eval.models.glide.config import BASE_DEFAULTS, UPSAMPLE_DEFAULTS
        from gill_eval.models.glide.config import build as build_glide

        defaults = {"base": BASE_DEFAULTS, "upsample": UPSAMPLE_DEFAULTS}
        torch.manual_seed(seed)
        for name, config in defaults.items():
            model, _ = build_glide({**config, **TINY_GLIDE_OVERRIDES[name], "use_fp16": False})
            with torch.no_grad():
                for param_name, param in model.named_parameters():
                    if param_name in GLIDE_UNINITIALISED or not param.any():
                        param.normal_(0.0, 0.02)
            torch.save(model.state_dict(), folder / f"{name}.pt")
        (folder / GLIDE_CONFIG).write_text(json.dumps(TINY_GLIDE_OVERRIDES, indent=2))

    return cached_build("glide", root, seed, build)
