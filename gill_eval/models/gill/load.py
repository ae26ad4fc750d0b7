"""Building GILL from a checkpoint folder and the weights it names (spec §4.1), offline-aware.

Order, as in the official ``load_gill``: read ``model_args.json``; tokenizer plus the [IMG] additions;
OPT (resized to the new vocabulary); CLIP vision and its image processor; the heads from the checkpoint;
the [IMG] rows written into the (tied) embedding; the decision model. Stable Diffusion is loaded lazily.

Where the weights come from: an option value, else the field in ``model_args.json`` (``opt_version``,
``visual_encoder``; ``sd_version`` for the tiny GILL, else SD 1.5). A value is a local path (relative
paths resolve against the checkpoint folder first) or a registered hub id, resolved through
``gill_eval.models.weights`` (standard HF cache; offline mode fails at once naming ``models fetch``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from gill_eval.console import info
from gill_eval.errors import ConfigError, InputError
from gill_eval.models import weights
from gill_eval.models.base import resolve_device
from gill_eval.models.gill.checkpoint import (
    ARGS_FILE,
    CHECKPOINT_FILE,
    DECISION_FILE,
    load_checkpoint,
    read_model_args,
)
from gill_eval.models.gill.decision import load_decision_model
from gill_eval.models.gill.mapper import GILLHeads
from gill_eval.models.gill.model import GILL, install_img_rows
from gill_eval.models.gill.tokenizer import add_gill_tokens

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
#: Registered weight names of the official components (``gill-eval models fetch NAME``).
_REGISTERED = {"facebook/opt-6.7b": "opt-6.7b", "openai/clip-vit-large-patch14": "clip-vit-large-patch14"}


@dataclass(frozen=True)
class Sources:
    """Where each component is loaded from (recorded in the model fingerprint)."""

    checkpoint: Path
    llm: str
    visual_encoder: str
    sd: str


def resolve_checkpoint_dir(checkpoint: str) -> Path:
    """The checkpoint folder: the given path, or the staged ``gill-checkpoint`` weight when empty."""
    folder = Path(checkpoint).expanduser() if checkpoint else weights.resolve("gill-checkpoint")
    if not folder.is_dir():
        raise InputError(f"{folder}: GILL checkpoint folder not found (it holds {CHECKPOINT_FILE}, {ARGS_FILE}, "
                         f"{DECISION_FILE})")
    return folder


def _local_or_id(ref: str, base: Path) -> str:
    """A path relative to the checkpoint folder if it exists there, else the value unchanged."""
    candidate = (base / ref).expanduser()
    return str(candidate) if candidate.exists() else ref


def _folder(ref: str, what: str) -> Path:
    """A local folder for a transformers component: a path as is, a registered hub id from the cache."""
    path = Path(ref).expanduser()
    if path.exists():
        return path
    if ref in _REGISTERED:
        return weights.resolve(_REGISTERED[ref])
    raise ConfigError(f"{what} {ref!r} is neither a local folder nor a registered weight "
                      f"({', '.join(_REGISTERED)})")


def resolve_sources(checkpoint: str, llm: str = "", visual_encoder: str = "", sd: str = "") -> Sources:
    """Every component's location, options first, then ``model_args.json``."""
    folder = resolve_checkpoint_dir(checkpoint)
    args = read_model_args(folder / ARGS_FILE)
    return Sources(
        checkpoint=folder,
        llm=llm or _local_or_id(args.opt_version, folder),
        visual_encoder=visual_encoder or _local_or_id(args.visual_encoder, folder),
        sd=sd or (_local_or_id(args.sd_version, folder) if args.sd_version else SD15),
    )


def dtypes(precision: str, device: torch.device) -> tuple[torch.dtype, torch.dtype]:
    """(LM/CLIP/heads dtype, SD dtype): ``auto`` is bf16 + fp16 on GPU (the official setting), fp32 on CPU."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "bf16":
        return torch.bfloat16, (torch.float16 if device.type == "cuda" else torch.float32)
    if precision == "fp32":
        return torch.float32, torch.float32
    raise ConfigError(f"precision {precision!r}: use auto, bf16 or fp32")


def parse_device_map(text: str) -> str | dict[str, str | int] | None:
    """The ``device_map`` option: empty (one device), a transformers strategy (``auto``, ``balanced``,
    ``sequential``) or a JSON object from OPT module names to devices (``{"lm_head": 0, ...}``)."""
    if not text:
        return None
    if not text.lstrip().startswith("{"):
        return text
    try:
        mapping = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"option device_map={text!r}: not valid JSON ({exc})") from None
    if not all(isinstance(k, str) and isinstance(v, (str, int)) for k, v in mapping.items()):
        raise ConfigError(f"option device_map={text!r}: expected module name -> device (string or GPU index)")
    return mapping


def load_gill(sources: Sources, precision: str = "auto", device: str = "auto", device_map: str = "",
              scheduler: str | None = None) -> GILL:
    """The assembled GILL, in eval mode, with SD loaded on first generation.

    ``scheduler`` names the diffusers scheduler class of the SD pipeline (None keeps the saved one, PNDM)."""
    from transformers import AutoTokenizer, CLIPImageProcessorPil, CLIPVisionModel, OPTForCausalLM

    dev = resolve_device(device)
    model_dtype, sd_dtype = dtypes(precision, dev)
    args = read_model_args(sources.checkpoint / ARGS_FILE)

    llm_dir = _folder(sources.llm, "LLM")
    # transformers 5 has no slow tokenizers (use_fast is ignored): the fast GPT-2 BPE gives the same ids.
    tokenizer = AutoTokenizer.from_pretrained(llm_dir, local_files_only=True)
    tokens = add_gill_tokens(tokenizer, source=sources.llm)
    lm = OPTForCausalLM.from_pretrained(llm_dir, dtype=model_dtype, device_map=parse_device_map(device_map),
                                        local_files_only=True)
    if not device_map:
        lm = lm.to(dev)
    lm.eval().requires_grad_(False)
    if lm.config.word_embed_proj_dim != lm.config.hidden_size:
        raise InputError(f"{sources.llm}: OPT with project_in/out (word_embed_proj_dim != hidden_size) is not "
                         f"GILL's OPT-6.7B layout")

    vision_dir = _folder(sources.visual_encoder, "visual encoder")
    vision = CLIPVisionModel.from_pretrained(vision_dir, dtype=model_dtype, local_files_only=True)
    vision = vision.to(dev).eval().requires_grad_(False)
    # The PIL processor: bicubic resize + centre crop exactly as the official (slow) feature extractor.
    processor = CLIPImageProcessorPil.from_pretrained(vision_dir, local_files_only=True)

    ckpt_path = sources.checkpoint / CHECKPOINT_FILE
    loaded = load_checkpoint(ckpt_path, args, lm_dim=lm.config.word_embed_proj_dim,
                             clip_dim=vision.config.hidden_size, vocab_size=tokens.vocab_size)
    for note in loaded.notes:
        info(f"{ckpt_path}: {note}")
    if loaded.unexpected:
        info(f"{ckpt_path}: {len(loaded.unexpected)} unexpected key(s) ignored: {', '.join(loaded.unexpected[:5])}")
    heads = GILLHeads(loaded.dims)
    heads.load_state_dict(loaded.heads, strict=True)
    heads = heads.to(device=dev, dtype=model_dtype).eval().requires_grad_(False)
    install_img_rows(lm, tokens, loaded.img_rows)

    decision_path = sources.checkpoint / DECISION_FILE
    # in the model's dtype, as GILL casts the whole model (bf16: the official decisions; docs/protocols.md)
    decision = (load_decision_model(decision_path, lm.config.word_embed_proj_dim, model_dtype)
                if decision_path.is_file() else None)

    def sd_loader():  # -> StableDiffusionPipeline, built on first generation
        return weights.load_sd_pipeline(sources.sd, device=dev, dtype=sd_dtype, scheduler=scheduler)

    return GILL(lm, tokenizer, tokens, vision, processor, heads, sd_loader=sd_loader, decision=decision)
