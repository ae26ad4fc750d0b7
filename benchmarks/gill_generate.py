"""Time per generated image of GILL, beside a bare diffusers call with the same settings (JSON on stdout).

``--real-size``: the real architecture with random weights, built directly on the device (no download,
no network): OPT-6.7B from ``OPTConfig`` in bf16 (vocabulary resized to 50274, [IMG] rows tied), CLIP
ViT-L/14 vision in bf16, GILL's heads (GILLMapper 4+4 layers, d_model 512) in bf16, and SD 1.5's UNet, VAE
and text encoder from their real configs in fp16 with PNDM, 512x512, 50 steps, guidance 7.5. Without it:
the tiny GILL (CPU-sized). Text is tokenized with the tiny byte-level tokenizer (ids are valid rows of
the real vocabulary; the [IMG] ids are the official 50266..50273): tokenization cost is negligible.

Measured per image, for two contexts (a VisDial-like single string and a VIST-like 5 captions + 4
images): ``gill_s`` = the adapter path (context embedding, 2 greedy decoding steps without KV cache,
GILLMapper, SD call with ``prompt_embeds``), and ``sd_only_s`` = the same SD call on a precomputed
``prompt_embeds`` (the naive baseline: what GILL adds over Stable Diffusion).

``--vist``: images/s of ``bench vist`` end to end (the generation stage of ``run_generation`` on a
synthetic prepared VIST set, context 5c4i: context building, batched LM and mapper, SD, PNG encoding,
Parquet shards and done markers) with GILL at ``--batch-size`` (8), against a bare diffusers loop over the
same pipeline object at the same batch size, steps and size (random ``prompt_embeds``, one generator per
image). On CPU GILL's SD call runs with per-sample convolutions (``cpu_exact``, what makes batches
bit-identical), so the bare loop is timed both with diffusers' default kernels and under ``cpu_exact``.
Usage::

    python benchmarks/gill_generate.py --device cuda --real-size --quick
    python benchmarks/gill_generate.py --device cpu --quick
    python benchmarks/gill_generate.py --device cuda --real-size --vist --stories 32
    python benchmarks/gill_generate.py --device cpu --vist --stories 16 --steps 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from gill_eval.models.gill.mapper import GILLHeads, HeadDims  # noqa: E402
from gill_eval.models.gill.model import GILL, DecodeSettings, SDSettings, install_img_rows  # noqa: E402
from gill_eval.models.gill.tokenizer import GillTokens  # noqa: E402

OFFICIAL_DIMS = HeadDims(lm_dim=4096, clip_dim=1024, n_visual_tokens=4, ret_emb_dim=256, gen_emb_dim=768,
                         num_clip_tokens=77, mapper_dim=512, mapper_ff=2048)
CAPTIONS = ["The family gathered at the lake house for the weekend.", "Grandpa started the grill early.",
            "The kids jumped off the dock all afternoon.", "We watched the sun go down over the water.",
            "Everyone sat around the fire and told stories."]


@contextlib.contextmanager
def building(device: str, dtype: torch.dtype) -> Iterator[None]:
    """Create parameters directly on ``device`` in ``dtype`` (no fp32 CPU copy of 6.7B parameters)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def real_size_gill(device: str, workdir: Path) -> GILL:
    """GILL with the real shapes and random weights: OPT-6.7B + CLIP ViT-L/14 (bf16), SD 1.5 (fp16)."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import (AutoTokenizer, CLIPImageProcessorPil, CLIPTextConfig, CLIPTextModel,
                              CLIPVisionConfig, CLIPVisionModel, OPTConfig, OPTForCausalLM)

    from gill_eval.models.gill.tiny import build_tiny_tokenizer
    from gill_eval.models.tiny import build_clip_tokenizer

    build_tiny_tokenizer(workdir / "tok")
    tokenizer = AutoTokenizer.from_pretrained(workdir / "tok")
    newline = tokenizer("\n", add_special_tokens=False).input_ids[0]
    tokens = GillTokens.official(newline_id=newline)
    bf16, fp16 = torch.bfloat16, (torch.float16 if device == "cuda" else torch.float32)
    with building(device, bf16):
        lm = OPTForCausalLM(OPTConfig(vocab_size=50272, hidden_size=4096, num_hidden_layers=32, ffn_dim=16384,
                                      num_attention_heads=32, max_position_embeddings=2048, word_embed_proj_dim=4096,
                                      pad_token_id=1, bos_token_id=2, eos_token_id=2)).eval()
        vision = CLIPVisionModel(CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                                  num_attention_heads=16, image_size=224, patch_size=14,
                                                  projection_dim=768, hidden_act="quick_gelu")).eval()
        heads = GILLHeads(OFFICIAL_DIMS).eval()
        install_img_rows(lm, tokens, torch.randn(8, 4096) * 0.02)
    with building(device, fp16):
        unet = UNet2DConditionModel(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                                    block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
                                    attention_head_dim=8,
                                    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                                      "CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                                                    "CrossAttnUpBlock2D")).eval()
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
                            block_out_channels=(128, 256, 512, 512),
                            down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4).eval()
        text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                            num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                            hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407,
                                            pad_token_id=1)).eval()
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                              steps_offset=1, set_alpha_to_one=False, num_train_timesteps=1000)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=build_clip_tokenizer(), unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return GILL(lm.requires_grad_(False), tokenizer, tokens, vision.requires_grad_(False), CLIPImageProcessorPil(),
                heads.requires_grad_(False), sd_loader=lambda: pipe)


def tiny_gill(device: str, workdir: Path) -> GILL:
    """The tiny GILL through the real loader (fp32)."""
    from gill_eval.models.gill.load import load_gill, resolve_sources
    from gill_eval.models.gill.tiny import tiny_gill_dir

    folder = tiny_gill_dir(root=workdir)
    return load_gill(resolve_sources(str(folder)), precision="fp32", device=device)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def contexts(image_size: int) -> dict[str, list[Any]]:
    from PIL import Image

    images = [Image.new("RGB", (image_size, image_size), color) for color in ("red", "green", "blue", "white")]
    story: list[Any] = []
    for i, caption in enumerate(CAPTIONS):
        story.append(caption)
        if i < 4:
            story.append(images[i])
    dialog = "\n".join(f"Q: what is in the picture {i}?\nA: a dog on the beach number {i}" for i in range(10))
    return {"visdial_text": [dialog], "vist_5c4i": story}


def _vist_data(root: Path, stories: int, image_size: int) -> None:
    """A prepared VIST dataset of ``stories`` complete 5-photo stories under the data root ``root``."""
    import io

    import pyarrow as pa
    from PIL import Image

    from gill_eval.store import Manifest, write_manifest, write_shard

    folder = root / "datasets" / "vist"
    rows, images = [], []
    for s in range(stories):
        ids = [f"{s:04d}{p}" for p in range(5)]
        rows.append({"story_id": f"s{s:04d}", "album_id": f"a{s}", "photo_ids": ids,
                     "texts": [CAPTIONS[(s + p) % len(CAPTIONS)] for p in range(5)]})
        for p, key in enumerate(ids):
            buf = io.BytesIO()
            Image.new("RGB", (image_size, image_size), (40 * p, 7 * s % 256, 90)).save(buf, format="PNG")
            images.append({"key": key, "image": buf.getvalue(), "status": "success", "error_message": None,
                           "width": image_size, "height": image_size})
    write_shard(pa.Table.from_pylist(rows), folder / "examples" / "00000.parquet")
    write_shard(pa.Table.from_pylist(images), folder / "images" / "00000.parquet")
    write_manifest(folder, Manifest(dataset="vist", options={"store": "gill-224"},
                                    counts={"stories": stories, "images": len(images)}))


def vist_throughput(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """``--vist``: images/s of the bench-vist generation stage with GILL against a bare diffusers loop."""
    import os

    from gill_eval.bench.generation import run_generation
    from gill_eval.bench.vist import VistBenchmark
    from gill_eval.models.base import cpu_generator
    from gill_eval.models.gill.model import cpu_exact
    from gill_eval.models.gill.tiny import tiny_gill_dir
    from gill_eval.models.registry import load_model
    from gill_eval.store import root as store_root

    size = 512 if args.real_size else 64
    os.environ["GILL_EVAL_DATA"] = str(workdir / "data")
    store_root._override = None
    _vist_data(workdir / "data", args.stories, 224)
    model = load_model("tiny-gill", {"checkpoint": str(tiny_gill_dir(root=workdir)), "steps": str(args.steps),
                                     "height": str(size), "width": str(size), "device": args.device,
                                     "batch_size": str(args.batch_size), "precision": "fp32"})
    if args.real_size:
        model._gill = real_size_gill(args.device, workdir)
    pipe = model.gill.sd_pipe
    pipe.set_progress_bar_config(disable=True)
    job = VistBenchmark().job("5c4i")
    n = len(job.example_ids)
    load_before = os.getloadavg()

    def gill_run(seed: int) -> None:
        run_generation(model, job, [seed], None, args.batch_size)

    embeds = torch.randn(args.batch_size, 77, pipe.unet.config.cross_attention_dim, device=pipe.device,
                         dtype=pipe.unet.dtype)
    kwargs = {"guidance_scale": 7.5, "num_inference_steps": args.steps, "height": size, "width": size}

    def bare_run(exact: bool) -> None:
        with cpu_exact(pipe.device) if exact else contextlib.nullcontext():
            for start in range(0, n, args.batch_size):
                count = min(args.batch_size, n - start)
                pipe(prompt_embeds=embeds[:count], generator=[cpu_generator(start + i) for i in range(count)],
                     **kwargs)

    gill_run(1000)  # warm-up: kernels, allocator, SD load (its own seed, so the timed runs generate anew)
    bare_run(False)
    timings: dict[str, list[float]] = {"gill": [], "bare": [], "bare_cpu_exact": []}
    for r in range(args.vist_repeats):  # interleaved, so that a shared machine's load hits all three alike
        timings["gill"] += timed(lambda: gill_run(r), args.device, 1)
        timings["bare"] += timed(lambda: bare_run(False), args.device, 1)
        if args.device == "cpu":
            timings["bare_cpu_exact"] += timed(lambda: bare_run(True), args.device, 1)
    rates = {name: n / (sum(t) / len(t)) for name, t in timings.items() if t}
    result = {
        "images_per_run": n, "batch_size": args.batch_size, "context": "5c4i", "steps": args.steps,
        "height": size, "width": size, "images_per_s": rates, "times_s": timings,
        "gill_over_bare_sd": rates["gill"] / rates["bare"],
        "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg()), "cpu_count": os.cpu_count(),
    }
    if "bare_cpu_exact" in rates:
        result["gill_over_bare_sd_cpu_exact"] = rates["gill"] / rates["bare_cpu_exact"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--real-size", action="store_true", help="real GILL shapes (needs a GPU)")
    parser.add_argument("--quick", action="store_true", help="1 warm-up + 2 timed images per context")
    parser.add_argument("--repeats", type=int, default=5, help="timed images per context (without --quick)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--vist", action="store_true", help="bench vist end to end vs a bare diffusers loop")
    parser.add_argument("--stories", type=int, default=16, help="--vist: stories (images per timed run)")
    parser.add_argument("--batch-size", type=int, default=8, help="--vist: images per SD call")
    parser.add_argument("--vist-repeats", type=int, default=2, help="--vist: timed runs of each")
    args = parser.parse_args()
    if args.vist:
        with tempfile.TemporaryDirectory() as tmp:
            result = vist_throughput(args, Path(tmp))
        print(json.dumps({
            "benchmark": "gill_generate --vist",
            "command": " ".join(["python", *sys.argv]),
            "architecture": "real-size (random weights)" if args.real_size else "tiny",
            "device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
            "torch_threads": torch.get_num_threads(),
            **result,
            "versions": {"torch": torch.__version__, "python": platform.python_version()},
        }, indent=2))
        return
    repeats = 2 if args.quick else args.repeats
    if args.real_size and args.device == "cpu":
        print("warning: --real-size on CPU runs OPT-6.7B in bf16 on the CPU and is very slow", file=sys.stderr)

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        gill = real_size_gill(args.device, Path(tmp)) if args.real_size else tiny_gill(args.device, Path(tmp))
        pipe = gill.sd_pipe
        _sync(args.device)
        build_s = time.perf_counter() - start
        size = 512 if args.real_size else 64
        sd = SDSettings(guidance=7.5, steps=args.steps, height=size, width=size)
        decode = DecodeSettings()
        results: dict[str, Any] = {}
        for name, context in contexts(size).items():
            def gill_image() -> None:
                block = gill.forced_img_states(context, decode)
                gill.sd_image(gill.prompt_embeds(block), torch.Generator().manual_seed(0), sd)

            def lm_only() -> None:
                gill.prompt_embeds(gill.forced_img_states(context, decode))

            embeds = gill.prompt_embeds(gill.forced_img_states(context, decode)).to(pipe.device, pipe.unet.dtype)

            def sd_only() -> None:
                pipe(prompt_embeds=embeds, generator=torch.Generator().manual_seed(0), guidance_scale=sd.guidance,
                     num_inference_steps=sd.steps, height=sd.height, width=sd.width)

            timed(gill_image, args.device, 1)  # warm-up (kernels, allocator)
            g = timed(gill_image, args.device, repeats)
            s = timed(sd_only, args.device, repeats)
            m = timed(lm_only, args.device, repeats)
            prefix_len = gill.embed_context(context).shape[1]
            results[name] = {
                "prefix_tokens": prefix_len,
                "gill_s_per_image": sum(g) / len(g),
                "sd_only_s_per_image": sum(s) / len(s),
                "lm_and_mapper_s": sum(m) / len(m),
                "gill_over_sd_ratio": (sum(g) / len(g)) / (sum(s) / len(s)),
                "gill_times_s": g,
                "sd_only_times_s": s,
            }
        memory = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else None
    print(json.dumps({
        "benchmark": "gill_generate",
        "architecture": "real-size (random weights)" if args.real_size else "tiny",
        "device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
        "dtypes": {"lm_clip_heads": str(next(gill.heads.parameters()).dtype), "sd": str(pipe.unet.dtype)},
        "settings": {"steps": sd.steps, "guidance": sd.guidance, "height": sd.height, "width": sd.width,
                     "num_words": decode.num_words, "gen_scale_factor": decode.gen_scale_factor,
                     "scheduler": type(pipe.scheduler).__name__, "repeats": repeats},
        "build_s": build_s,
        "peak_gpu_memory_gib": memory,
        "contexts": results,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }, indent=2))


if __name__ == "__main__":
    main()
