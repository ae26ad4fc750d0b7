"""GLIDE text2im sampling speed: gill-eval's sampler vs. the recorded recipe step for step. JSON out.

Both methods run the same networks on the same prompts and noise, in one process:

* ``recipe``: the text2im notebook's loop as glide-text2im runs it (the loop that produced
  tests/fixtures/glide/loop.pt): at every step the guided model function re-encodes the prompt and the
  empty prompt with the text transformer, then runs the UNet on the doubled state; the upsampler's DDIM
  likewise re-encodes its prompt at every step;
* ``gill_eval``: ``gill_eval.models.glide.sampler``, which encodes the text once per loop (the encoder
  does not depend on the image or the step) and runs the same UNet calls.

``max_abs_diff`` is the largest difference between the two methods' final upsampled images in [-1, 1]
(0: same numbers). Default: the fixture's tiny GLIDE (tests/fixtures/glide: 32 channels, 64 -> 128 px) on
CPU in fp32 at the notebook's settings (base ``100``, upsampler ``fast27``). ``--real-size``: the released
architectures (base 64 px, upsampler to 256 px, text transformer 16 x 512) with random weights, fp16 on GPU;
on a GPU: ``python benchmarks/glide_sampling.py --device cuda --real-size``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from gill_eval.models.glide.config import BASE_DEFAULTS, UPSAMPLE_DEFAULTS, build  # noqa: E402
from gill_eval.models.glide.diffusion import SpacedDiffusion  # noqa: E402
from gill_eval.models.glide.sampler import (guided_base_states, last, quantise, tokenize,  # noqa: E402
                                            upsample_states)
from gill_eval.models.glide.tokenizer import glide_tokenizer  # noqa: E402
from gill_eval.models.glide.unet import Text2ImUNet  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "glide"
METHODS = ("recipe", "gill_eval")
PROMPTS = ["an oil painting of a corgi", "a red double-decker bus in the rain", "two cats on a sofa",
           "a lighthouse at dawn"]


def networks(real_size: bool, base_steps: str, up_steps: str, device: torch.device,
             fp16: bool) -> tuple[tuple[Text2ImUNet, SpacedDiffusion], tuple[Text2ImUNet, SpacedDiffusion]]:
    """Both networks: the fixture's tiny ones with their weights, or the released sizes, random."""
    if real_size:
        settings = {"base": BASE_DEFAULTS, "upsample": UPSAMPLE_DEFAULTS}
    else:
        settings = json.loads((FIXTURES / "config.json").read_text())
    out = []
    for name, spacing in (("base", base_steps), ("upsample", up_steps)):
        torch.manual_seed(0)
        model, diffusion = build({**settings[name], "timestep_respacing": spacing})
        if real_size:
            with torch.no_grad():
                for param in model.parameters():
                    param.normal_(0.0, 0.02)
        else:
            model.load_state_dict(torch.load(FIXTURES / f"{name}.pt", weights_only=True))
        if fp16:
            model.convert_to_fp16()
        out.append((model.to(device), diffusion))
    return out[0], out[1]


def recipe_base_states(model: Text2ImUNet, diffusion: SpacedDiffusion, tokens: torch.Tensor, mask: torch.Tensor,
                       guidance: float, x: torch.Tensor, step_noise: Callable[[], torch.Tensor]) -> Iterator[torch.Tensor]:
    """The notebook's guided loop: the text encoder runs inside every model call."""
    n = len(x)
    for index in reversed(range(diffusion.num_timesteps)):
        out = model(torch.cat([x, x]), diffusion.model_timesteps(index, 2 * n, x.device), tokens=tokens, mask=mask)
        cond, uncond = out[:n, :3], out[n:, :3]
        guided = torch.cat([uncond + guidance * (cond - uncond), out[:n, 3:]], dim=1)
        x = diffusion.p_sample(x, index, guided, step_noise())
        yield x


def recipe_upsample_states(model: Text2ImUNet, diffusion: SpacedDiffusion, tokens: torch.Tensor, mask: torch.Tensor,
                           low_res: torch.Tensor, x: torch.Tensor) -> Iterator[torch.Tensor]:
    for index in reversed(range(diffusion.num_timesteps)):
        out = model(x, diffusion.model_timesteps(index, len(x), x.device), tokens=tokens, mask=mask, low_res=low_res)
        x = diffusion.ddim_sample(x, index, out)
        yield x


def sample(method: str, base: tuple, up: tuple, prompts: list[str], device: torch.device, seed: int) -> torch.Tensor:
    """One text2im batch by ``method``; noise from one seeded generator, the same for both methods."""
    (base_model, base_diffusion), (up_model, up_diffusion) = base, up
    gen = torch.Generator().manual_seed(seed)
    n, size, up_size = len(prompts), base_model.config.image_size, up_model.config.image_size

    def noise(side: int) -> torch.Tensor:
        return torch.randn((n, 3, side, side), generator=gen).to(device)

    tokenizer = glide_tokenizer()
    tokens, mask, _ = tokenize(tokenizer, [*prompts, *[""] * n], base_model.config.text_ctx, device)
    up_tokens, up_mask, _ = tokenize(tokenizer, prompts, up_model.config.text_ctx, device)
    with torch.no_grad():
        if method == "recipe":
            low = last(recipe_base_states(base_model, base_diffusion, tokens, mask, 3.0, noise(size),
                                          lambda: noise(size)))
            return last(recipe_upsample_states(up_model, up_diffusion, up_tokens, up_mask, quantise(low),
                                               noise(up_size) * 0.997))
        low = last(guided_base_states(base_model, base_diffusion, base_model.encode_text(tokens, mask), 3.0,
                                      noise(size), lambda: noise(size)))
        return last(upsample_states(up_model, up_diffusion, up_model.encode_text(up_tokens, up_mask),
                                    quantise(low), noise(up_size) * 0.997))


def timed(base: tuple, up: tuple, prompts: list[str], device: torch.device,
          repeats: int) -> dict[str, tuple[float, torch.Tensor]]:
    """Per method, the best wall time of ``repeats`` runs (after one warm-up each) and its output; the
    methods alternate, so that load from other work falls on both alike."""
    best = {method: (float("inf"), sample(method, base, up, prompts, device, seed=0)) for method in METHODS}
    for _ in range(repeats):
        for method in METHODS:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            result = sample(method, base, up, prompts, device, seed=0)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best[method] = (min(best[method][0], time.perf_counter() - start), result)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--real-size", action="store_true", help="the released architectures, random weights")
    parser.add_argument("--batch", type=int, default=1, help="prompts per sampling loop")
    parser.add_argument("--base-steps", default="100")
    parser.add_argument("--upsample-steps", default="fast27")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    fp16 = device.type == "cuda"
    base, up = networks(args.real_size, args.base_steps, args.upsample_steps, device, fp16)
    prompts = (PROMPTS * args.batch)[: args.batch]
    load_before = os.getloadavg()[0]
    runs = timed(base, up, prompts, device, args.repeats)
    (recipe_s, recipe_out), (ours_s, ours_out) = runs["recipe"], runs["gill_eval"]
    print(json.dumps({
        "benchmark": "glide_sampling",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "threads": torch.get_num_threads(), "fp16": fp16,
        "model": "released architectures, random weights" if args.real_size else "tests/fixtures/glide tiny GLIDE",
        "image_size": [base[0].config.image_size, up[0].config.image_size],
        "steps": {"base": args.base_steps, "upsample": args.upsample_steps}, "batch": args.batch,
        "seconds_per_image": {"recipe": recipe_s / args.batch, "gill_eval": ours_s / args.batch},
        "speedup": recipe_s / ours_s,
        "max_abs_diff": float((recipe_out.float() - ours_out.float()).abs().max()),
        "load_average": [load_before, os.getloadavg()[0]],  # other work on the machine makes CPU times noisy
    }, indent=2))


if __name__ == "__main__":
    main()
