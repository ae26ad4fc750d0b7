"""GLIDE's text2im recipe (glide-text2im's notebook): guided base sampling, then the upsampler.

1. The base model samples 64x64 with the learned-variance sampler and classifier-free guidance: each step
   runs the network once on the state twice over, with the prompt's tokens and with the empty prompt's,
   and uses eps_uncond + s (eps_cond - eps_uncond) with the conditional half's variance. Only that half
   of the package's doubled state is ever read, so the state here is the conditional half alone.
2. Its sample, rounded to 8 bits, conditions the upsampler, which runs DDIM (eta 0) from its initial noise
   (scaled by the caller, 0.997 in the notebook) with the prompt's tokens and no guidance.

The text encoder's output does not depend on the image or the step, so it is computed once per loop
(glide-text2im recomputes it at every step; the values are the same). Randomness comes in from the caller,
so that each item can draw from its own generator (docs/protocols.md, GLIDE).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from gill_eval.models.glide.diffusion import SpacedDiffusion
from gill_eval.models.glide.tokenizer import GlideTokenizer
from gill_eval.models.glide.unet import Text2ImUNet, TextConditioning


def tokenize(tokenizer: GlideTokenizer, prompts: Sequence[str], text_ctx: int,
             device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list[bool]]:
    """Padded token ids and masks (N x text_ctx) of ``prompts``, and whether each was cut at the context."""
    ids = [tokenizer.encode(prompt) for prompt in prompts]
    padded = [tokenizer.padded_tokens_and_mask(one, text_ctx) for one in ids]
    tokens = torch.tensor([p[0] for p in padded], dtype=torch.long, device=device)
    mask = torch.tensor([p[1] for p in padded], dtype=torch.bool, device=device)
    return tokens, mask, [len(one) > text_ctx for one in ids]


def guided_base_states(model: Text2ImUNet, diffusion: SpacedDiffusion, text: TextConditioning, guidance: float,
                       x: torch.Tensor, step_noise: Callable[[], torch.Tensor]) -> Iterator[torch.Tensor]:
    """The base model's state after each sampler step (the last is the sample). ``text`` encodes the N
    prompts followed by N empty prompts; ``step_noise()`` is called once per step, the last included
    (whose draw the sampler does not add), so a caller's random stream has one draw per step."""
    n = len(x)
    for index in reversed(range(diffusion.num_timesteps)):
        out = model(torch.cat([x, x]), diffusion.model_timesteps(index, 2 * n, x.device), text=text)
        cond, uncond = out[:n, :3], out[n:, :3]
        guided = torch.cat([uncond + guidance * (cond - uncond), out[:n, 3:]], dim=1)
        x = diffusion.p_sample(x, index, guided, step_noise())
        yield x


def upsample_states(model: Text2ImUNet, diffusion: SpacedDiffusion, text: TextConditioning, low_res: torch.Tensor,
                    x: torch.Tensor) -> Iterator[torch.Tensor]:
    """The upsampler's DDIM state after each step from initial noise ``x`` (the last is the sample)."""
    for index in reversed(range(diffusion.num_timesteps)):
        out = model(x, diffusion.model_timesteps(index, len(x), x.device), low_res=low_res, text=text)
        x = diffusion.ddim_sample(x, index, out)
        yield x


def last(states: Iterator[torch.Tensor]) -> torch.Tensor:
    """The final state of a sampling loop."""
    state = None
    for state in states:
        pass
    if state is None:
        raise ValueError("a sampling loop with no steps")
    return state


def quantise(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] values rounded to the 256 levels of an 8-bit image (the upsampler's low-res input)."""
    return ((x + 1) * 127.5).round() / 127.5 - 1


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images (N x 3 x H x W) as uint8 pixels (N x H x W x 3)."""
    return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
