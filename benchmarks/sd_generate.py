#!/usr/bin/env python
"""Images/s of gill-eval's Stable Diffusion model against a bare diffusers loop, side by side (JSON).

Both sides drive the **same** ``StableDiffusionPipeline`` object with the same prompts, per-image CPU
generators, batch size, steps, guidance and image size; rounds alternate (bare, gill-eval, bare, ...) so
drift of a shared machine hits both alike; the ratio of median rounds is reported, and that of the best
rounds (the least disturbed estimate on a busy machine). The gill-eval side adds
what it adds in real runs: caption joining, the context checks and the 77-token truncation count.
The first batch's images of both sides are compared as a sanity check that they did the same work.

Weights are random (no network): ``--real-size`` builds SD 1.5's real architecture from its config values
(UNet 860M, VAE, CLIP ViT-L/14 text encoder) in fp16 at 512x512; the default is the tiny test pipeline
(metrics.md). Only torch, transformers, diffusers and open_clip (for the tokenizer's BPE file) are needed.

    python benchmarks/sd_generate.py --threads 1                      # CPU, tiny pipeline
    python benchmarks/sd_generate.py --device cuda --real-size        # H100: 20 steps, batch 8, 512x512
    python benchmarks/sd_generate.py --device cuda --real-size --quick
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gill_eval.models.base import example_seed  # noqa: E402
from gill_eval.models.stable_diffusion import SDOptions, StableDiffusionModel  # noqa: E402

# Stable Diffusion 1.5's component configs (stable-diffusion-v1-5/stable-diffusion-v1-5, */config.json).
SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32, norm_eps=1e-5, act_fn="silu",
    flip_sin_to_cos=True, freq_shift=0, downsample_padding=1, mid_block_scale_factor=1,
)
SD15_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    norm_num_groups=32, act_fn="silu", sample_size=512, scaling_factor=0.18215,
)
SD15_TEXT = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768,
    bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
)
# The tiny test pipeline (metrics.md), 64x64.
TINY_UNET = dict(
    sample_size=32, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(32, 64),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=32,
)
TINY_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64),
    down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
)
TINY_TEXT = dict(
    vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
    max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
)
SD15_PNDM = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                 steps_offset=1, set_alpha_to_one=False, num_train_timesteps=1000)

CAPTIONS = [
    "a photo of a cat sitting on a wooden table next to a window",
    "an oil painting of a lighthouse on a cliff during a storm",
    "two people riding bicycles along a beach at sunset",
    "a bowl of ramen with an egg and green onions, top view",
    "a red double-decker bus driving through a rainy city street",
    "a watercolor illustration of a fox in a snowy forest",
    "a close-up of a hummingbird drinking from a purple flower",
    "a futuristic city skyline at night with flying cars",
]


def clip_tokenizer():
    """SD's CLIP tokenizer built offline from open_clip's bundled BPE file (no hub access on the box).

    Same construction as ``gill_eval.models.tiny.build_clip_tokenizer``, repeated here so the script
    needs no gill-eval storage dependencies (pyarrow, platformdirs) on a bare GPU machine."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    with gzip.open(default_bpe(), "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=merges, model_max_length=77)


def build_pipeline(real_size: bool, device: torch.device, dtype: torch.dtype):
    """diffusers' StableDiffusionPipeline with random weights, built directly on ``device``."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    unet_cfg, vae_cfg, text_cfg = (SD15_UNET, SD15_VAE, SD15_TEXT) if real_size else (TINY_UNET, TINY_VAE, TINY_TEXT)
    torch.manual_seed(0)
    with device:
        unet = UNet2DConditionModel(**unet_cfg).eval()
        vae = AutoencoderKL(**vae_cfg).eval()
        text = CLIPTextModel(CLIPTextConfig(**text_cfg)).eval()
    if dtype != torch.float32:
        unet, vae, text = unet.to(dtype), vae.to(dtype), text.to(dtype)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text, tokenizer=clip_tokenizer(), unet=unet, scheduler=PNDMScheduler(**SD15_PNDM),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(pipe, prompts: list[str], seeds: list[int], batch_size: int, kwargs: dict) -> list:
    """What a user writes with diffusers alone: the same per-image CPU generators and settings."""
    images = []
    for start in range(0, len(prompts), batch_size):
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds[start : start + batch_size]]
        chunk = prompts[start : start + batch_size]
        images += pipe(prompt=chunk, generator=generators, output_type="pil", **kwargs).images
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--real-size", action="store_true", help="SD 1.5 architecture, fp16 on GPU, 512x512")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1 batch instead of 3 of 2")
    parser.add_argument("--steps", type=int, default=None, help="default: 20 real-size, 10 tiny")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 8 real-size, 4 tiny")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--batches", type=int, default=None, help="batches per round and side")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.steps = args.steps or (20 if args.real_size else 10)
    args.batch_size = args.batch_size or (8 if args.real_size else 4)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    size = 512 if args.real_size else 64
    rounds = args.rounds or (2 if args.quick else 3)
    batches = args.batches or (1 if args.quick else 2)
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # random fp16 weights can give NaN pixels

    t0 = time.perf_counter()
    pipe = build_pipeline(args.real_size, device, dtype)
    _sync(device)
    build_s = time.perf_counter() - t0

    options = SDOptions(preset="gill", steps=args.steps, height=size, width=size, batch_size=args.batch_size,
                        device=str(device), dtype="fp16" if dtype == torch.float16 else "fp32")
    model = StableDiffusionModel(options, pipeline=pipe)
    kwargs = model.pipeline_kwargs()

    n = args.batch_size * batches
    prompts = [CAPTIONS[i % len(CAPTIONS)] for i in range(n)]
    contexts = [[p] for p in prompts]
    seeds = [example_seed(0, f"example-{i}") for i in range(n)]

    # Warm-up (kernel selection, allocator) on one batch each; also the sanity comparison.
    first = slice(0, args.batch_size)
    warm_bare = bare_loop(pipe, prompts[first], seeds[first], args.batch_size, kwargs)
    warm_ours = model.generate(contexts[first], seeds[first])
    max_diff = max(
        int(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max()) for a, b in zip(warm_bare, warm_ours)
    )

    bare_s, ours_s = [], []
    for _ in range(rounds):
        _sync(device)
        t = time.perf_counter()
        bare_loop(pipe, prompts, seeds, args.batch_size, kwargs)
        _sync(device)
        bare_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        model.generate(contexts, seeds)
        _sync(device)
        ours_s.append(time.perf_counter() - t)

    import diffusers
    import transformers

    bare_ips = n / statistics.median(bare_s)
    ours_ips = n / statistics.median(ours_s)
    result = {
        "benchmark": "sd_generate",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "cpu_threads": torch.get_num_threads(),
        "architecture": "sd15 (random weights)" if args.real_size else "tiny test pipeline (random weights)",
        "dtype": str(dtype).replace("torch.", ""),
        "height": size,
        "width": size,
        "steps": args.steps,
        "guidance": kwargs["guidance_scale"],
        "scheduler": type(pipe.scheduler).__name__,
        "batch_size": args.batch_size,
        "images_per_round": n,
        "rounds": rounds,
        "build_s": round(build_s, 2),
        "bare_diffusers_round_s": [round(x, 4) for x in bare_s],
        "gill_eval_round_s": [round(x, 4) for x in ours_s],
        "bare_diffusers_images_per_s": round(bare_ips, 4),
        "gill_eval_images_per_s": round(ours_ips, 4),
        "ratio_gill_eval_over_bare": round(ours_ips / bare_ips, 4),
        # Best rounds: on a shared machine the minimum is the least disturbed estimate of each side.
        "ratio_best_rounds": round(min(bare_s) / min(ours_s), 4),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "first_batch_max_pixel_diff": max_diff,
        "truncated_contexts": model.last_run_stats["truncated_contexts"],
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__, "python": platform.python_version()},
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
