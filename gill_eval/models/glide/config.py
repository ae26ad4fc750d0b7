"""GLIDE's settings: glide-text2im's defaults for the released base model and upsampler, and building a
network and its respaced schedule from a settings dict (keys as the package's
``model_and_diffusion_defaults()``, so a weights folder's ``glide_config.json`` means the same to both).
"""

from __future__ import annotations

from typing import Any

from gill_eval.errors import ConfigError
from gill_eval.models.glide.diffusion import SpacedDiffusion
from gill_eval.models.glide.tokenizer import glide_tokenizer
from gill_eval.models.glide.unet import Text2ImUNet, UNetConfig

#: The released 64x64 base model (``base.pt``).
BASE_DEFAULTS: dict[str, Any] = {
    "image_size": 64, "num_channels": 192, "num_res_blocks": 3, "channel_mult": "", "num_heads": 1,
    "num_head_channels": 64, "num_heads_upsample": -1, "attention_resolutions": "32,16,8", "dropout": 0.1,
    "text_ctx": 128, "xf_width": 512, "xf_layers": 16, "xf_heads": 8, "xf_final_ln": True, "xf_padding": True,
    "diffusion_steps": 1000, "noise_schedule": "squaredcos_cap_v2", "timestep_respacing": "",
    "use_scale_shift_norm": True, "resblock_updown": True, "use_fp16": True, "cache_text_emb": False,
    "inpaint": False, "super_res": False,
}
#: The released 64 -> 256 upsampler (``upsample.pt``).
UPSAMPLE_DEFAULTS: dict[str, Any] = {**BASE_DEFAULTS, "image_size": 256, "num_res_blocks": 2,
                                     "noise_schedule": "linear", "super_res": True}
#: The package's channel multipliers when ``channel_mult`` is empty, per image size.
_DEFAULT_MULT = {256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}


def _ints(value: str, key: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in str(value).split(","))
    except ValueError:
        raise ConfigError(f"setting {key}={value!r}: expected comma-separated integers") from None


def unet_config(settings: dict[str, Any]) -> UNetConfig:
    """The architecture of ``settings`` (checked as the package checks it)."""
    size = int(settings["image_size"])
    if settings["inpaint"]:
        raise ConfigError("setting inpaint=true: gill-eval's GLIDE has the text2im models only (base, upsample)")
    if settings["channel_mult"] == "":
        if size not in _DEFAULT_MULT:
            raise ConfigError(f"setting image_size={size}: without channel_mult only 64, 128 or 256")
        mult = _DEFAULT_MULT[size]
    else:
        mult = _ints(settings["channel_mult"], "channel_mult")
        if 2 ** (len(mult) + 2) != size:
            raise ConfigError(f"setting channel_mult={settings['channel_mult']!r}: {len(mult)} levels do not fit "
                              f"image_size {size} (it needs 2**(levels+2) == image_size)")
    if int(settings["num_channels"]) % 32:
        raise ConfigError(f"setting num_channels={settings['num_channels']}: GroupNorm's 32 groups need a multiple of 32")
    return UNetConfig(
        image_size=size, num_channels=int(settings["num_channels"]), num_res_blocks=int(settings["num_res_blocks"]),
        channel_mult=mult,
        attention_ds=tuple(size // r for r in _ints(settings["attention_resolutions"], "attention_resolutions")),
        num_heads=int(settings["num_heads"]), num_head_channels=int(settings["num_head_channels"]),
        num_heads_upsample=int(settings["num_heads_upsample"]), dropout=float(settings["dropout"]),
        text_ctx=int(settings["text_ctx"]), xf_width=int(settings["xf_width"]), xf_layers=int(settings["xf_layers"]),
        xf_heads=int(settings["xf_heads"]), xf_final_ln=bool(settings["xf_final_ln"]),
        xf_padding=bool(settings["xf_padding"]), use_scale_shift_norm=bool(settings["use_scale_shift_norm"]),
        resblock_updown=bool(settings["resblock_updown"]), super_res=bool(settings["super_res"]),
        n_vocab=glide_tokenizer().n_vocab,
    )


def build(settings: dict[str, Any]) -> tuple[Text2ImUNet, SpacedDiffusion]:
    """The network (fp32, eval mode, parameters unset) and its respaced schedule; fp16 is the caller's
    ``convert_to_fp16()`` after loading."""
    try:
        model = Text2ImUNet(unet_config(settings)).eval()
    except ValueError as exc:  # e.g. heads that do not divide the width
        raise ConfigError(f"GLIDE settings: {exc}") from None
    diffusion = SpacedDiffusion.create(settings["noise_schedule"], int(settings["diffusion_steps"]),
                                       settings["timestep_respacing"])
    return model, diffusion
