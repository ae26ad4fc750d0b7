"""Reading GILL's released files: ``model_args.json`` and ``pretrained_ckpt.pth.tar``.

The loader is strict where the official one is not: the official code loads with ``strict=False`` and so
would silently ignore a renamed key. Here every key the heads need must be present with the right shape
(a missing one is an ``InputError`` naming it); keys that are not needed are reported, not fatal, because
the exact key set of the released file could not be verified (spec §1.2). Tolerated variations: extra
top-level entries beside ``state_dict``, ``module.`` anywhere in key names (DDP), and an embedding matrix
of the full resized vocabulary instead of the pruned 8 rows (the last 8 rows are taken).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gill_eval.errors import InputError
from gill_eval.models.gill.mapper import MAPPER_LAYERS, HeadDims
from gill_eval.models.gill.tokenizer import NUM_IMG_TOKENS

CHECKPOINT_FILE = "pretrained_ckpt.pth.tar"
ARGS_FILE = "model_args.json"
DECISION_FILE = "decision_model.pth.tar"
EMBEDDING_KEY = "model.input_embeddings.weight"
_PREFIX = "model."
_MAPPER = "gen_text_hidden_fcs.0."
_ATTN = ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")


@dataclass(frozen=True)
class ModelArgs:
    """The fields of ``model_args.json`` that inference uses (unknown fields are ignored, spec §1.1).

    ``sd_version`` is not an official field: the tiny GILL writes it so that its checkpoint folder names
    its own Stable Diffusion; the real file lacks it and the SD 1.5 default applies.
    """

    opt_version: str
    visual_encoder: str
    n_visual_tokens: int
    ret_emb_dim: int
    gen_emb_dim: int
    num_tokens: int
    num_clip_tokens: int
    sd_version: str | None = None


def read_model_args(path: Path) -> ModelArgs:
    """Parse and check ``model_args.json``; an unsupported value is an ``InputError`` naming the field."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: not found (a GILL checkpoint folder holds {ARGS_FILE})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a JSON object")
    required = {"opt_version": str, "visual_encoder": str, "n_visual_tokens": int, "ret_emb_dim": int,
                "gen_emb_dim": int, "num_tokens": int, "num_clip_tokens": int}
    values: dict[str, Any] = {}
    for name, kind in required.items():
        if name not in raw:
            raise InputError(f"{path}: missing field {name!r}")
        if not isinstance(raw[name], kind) or isinstance(raw[name], bool):
            raise InputError(f"{path}: field {name!r} must be {kind.__name__}, got {raw[name]!r}")
        values[name] = raw[name]
    fixed = {"text_emb_layers": [-1], "text_fc_mode": "gill_mapper", "ret_text_fc_mode": "linear",
             "share_ret_gen": True}
    for name, supported in fixed.items():
        if name in raw and raw[name] != supported:
            raise InputError(f"{path}: field {name!r} = {raw[name]!r} is not supported (only {supported!r})")
    if values["num_tokens"] != NUM_IMG_TOKENS:
        raise InputError(f"{path}: field 'num_tokens' = {values['num_tokens']}, only {NUM_IMG_TOKENS} is supported")
    sd_version = raw.get("sd_version")
    if sd_version is not None and not isinstance(sd_version, str):
        raise InputError(f"{path}: field 'sd_version' must be a string")
    return ModelArgs(**values, sd_version=sd_version)


def head_shapes(dims: HeadDims) -> dict[str, tuple[int, ...]]:
    """Every checkpoint key (with ``model.``) the heads need, with its shape; the embedding key excluded."""
    d, ff = dims.mapper_dim, dims.mapper_ff
    shapes: dict[str, tuple[int, ...]] = {
        "logit_scale": (),
        "visual_embeddings.weight": (dims.lm_dim * dims.n_visual_tokens, dims.clip_dim),
        "visual_embeddings.bias": (dims.lm_dim * dims.n_visual_tokens,),
        "visual_fc.weight": (dims.ret_emb_dim, dims.clip_dim),
        "visual_fc.bias": (dims.ret_emb_dim,),
        "ret_text_hidden_fcs.0.model.weight": (dims.ret_emb_dim, dims.lm_dim),
        "ret_text_hidden_fcs.0.model.bias": (dims.ret_emb_dim,),
        _MAPPER + "fc.weight": (d, dims.lm_dim),
        _MAPPER + "fc.bias": (d,),
        _MAPPER + "model.weight": (dims.gen_emb_dim, d),
        _MAPPER + "model.bias": (dims.gen_emb_dim,),
        _MAPPER + "query_embs": (1, dims.num_clip_tokens, d),
    }
    attn = {"in_proj_weight": (3 * d, d), "in_proj_bias": (3 * d,), "out_proj.weight": (d, d), "out_proj.bias": (d,)}
    ffn = {"linear1.weight": (ff, d), "linear1.bias": (ff,), "linear2.weight": (d, ff), "linear2.bias": (d,)}
    for stack, blocks, norms in (("encoder", ("self_attn",), 2), ("decoder", ("self_attn", "multihead_attn"), 3)):
        for i in range(MAPPER_LAYERS):
            layer = f"{_MAPPER}tfm.{stack}.layers.{i}."
            for block in blocks:
                shapes.update({f"{layer}{block}.{k}": s for k, s in attn.items()})
            shapes.update({layer + k: s for k, s in ffn.items()})
            for n in range(1, norms + 1):
                shapes[f"{layer}norm{n}.weight"] = (d,)
                shapes[f"{layer}norm{n}.bias"] = (d,)
        shapes[f"{_MAPPER}tfm.{stack}.norm.weight"] = (d,)
        shapes[f"{_MAPPER}tfm.{stack}.norm.bias"] = (d,)
    return {_PREFIX + k: v for k, v in shapes.items()}


@dataclass
class LoadedCheckpoint:
    """The heads' state dict (keys without ``model.``), the 8 [IMG] rows and what did not match."""

    heads: dict[str, torch.Tensor]
    img_rows: torch.Tensor
    dims: HeadDims
    dtype: torch.dtype
    unexpected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors with every ``module.`` removed (weights_only, loaded onto the CPU)."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: not found (a GILL checkpoint folder holds {CHECKPOINT_FILE})") from None
    except Exception as exc:  # torch raises many types for a corrupt or non-weights-only file
        raise InputError(f"{path}: cannot be read as a weights-only torch checkpoint ({exc})") from None
    state = blob.get("state_dict") if isinstance(blob, dict) else None
    if not isinstance(state, dict):
        raise InputError(f"{path}: expected a dict with a 'state_dict' entry")
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key.replace("module.", "")
        if not isinstance(value, torch.Tensor):
            raise InputError(f"{path}: entry {key!r} is not a tensor")
        if name in cleaned:
            raise InputError(f"{path}: keys collide after removing 'module.': {name!r}")
        cleaned[name] = value
    return cleaned


def mapper_sizes(state: dict[str, torch.Tensor], path: Path) -> tuple[int, int]:
    """The mapper's width and feed-forward size, read from the checkpoint (official: 512 and 2048)."""
    sizes = []
    for key in (f"{_PREFIX}{_MAPPER}fc.weight", f"{_PREFIX}{_MAPPER}tfm.encoder.layers.0.linear1.weight"):
        if key not in state:
            raise InputError(f"{path}: missing required key {key!r}")
        sizes.append(int(state[key].shape[0]))
    return sizes[0], sizes[1]


def load_checkpoint(path: Path, args: ModelArgs, lm_dim: int, clip_dim: int, vocab_size: int) -> LoadedCheckpoint:
    """Load ``pretrained_ckpt.pth.tar`` for an LM of width ``lm_dim`` and ``vocab_size`` rows (50274).

    Raises ``InputError`` naming the first missing key or the first key with a wrong shape.
    """
    state = read_state_dict(path)
    mapper_dim, mapper_ff = mapper_sizes(state, path)
    dims = HeadDims(lm_dim=lm_dim, clip_dim=clip_dim, n_visual_tokens=args.n_visual_tokens,
                    ret_emb_dim=args.ret_emb_dim, gen_emb_dim=args.gen_emb_dim,
                    num_clip_tokens=args.num_clip_tokens, mapper_dim=mapper_dim, mapper_ff=mapper_ff,
                    num_tokens=args.num_tokens)
    notes: list[str] = []
    if EMBEDDING_KEY not in state:
        raise InputError(f"{path}: missing required key {EMBEDDING_KEY!r}")
    emb = state.pop(EMBEDDING_KEY)
    if emb.ndim != 2 or emb.shape[1] != lm_dim or emb.shape[0] not in (NUM_IMG_TOKENS, vocab_size):
        raise InputError(f"{path}: {EMBEDDING_KEY} has shape {tuple(emb.shape)}, expected "
                         f"({NUM_IMG_TOKENS}, {lm_dim}) or the full ({vocab_size}, {lm_dim})")
    if emb.shape[0] == vocab_size:
        notes.append(f"{EMBEDDING_KEY} holds the full {vocab_size}-row matrix; its last {NUM_IMG_TOKENS} rows are used")
        emb = emb[-NUM_IMG_TOKENS:]
    expected = head_shapes(dims)
    for key, shape in expected.items():
        if key not in state:
            raise InputError(f"{path}: missing required key {key!r}")
        if tuple(state[key].shape) != shape:
            raise InputError(f"{path}: key {key!r} has shape {tuple(state[key].shape)}, expected {shape}")
    unexpected = sorted(k for k in state if k not in expected)
    dtypes = {t.dtype for t in state.values()} | {emb.dtype}
    dtype = emb.dtype if len(dtypes) == 1 else torch.float32
    if len(dtypes) > 1:
        notes.append(f"mixed dtypes {sorted(str(d) for d in dtypes)}")
    heads = {k[len(_PREFIX):]: state[k] for k in expected}
    return LoadedCheckpoint(heads=heads, img_rows=emb.clone(), dims=dims, dtype=dtype, unexpected=unexpected,
                            notes=notes)
