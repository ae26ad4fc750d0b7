"""A tiny GILL in the official on-disk layout, for tests and the quickstart (meaningless outputs).

One folder that ``--model gill --model-opt checkpoint=DIR`` loads through the real code path:

* ``pretrained_ckpt.pth.tar``: the official key names (137 tensors, ``model.`` prefix, bf16), with the
  shapes scaled down: LM width 64, CLIP width 32, retrieval 16-d, mapper width 32 / feed-forward 64
  (still 4 heads, 4+4 layers, 77 queries), generation width = the tiny SD's cross-attention width;
* ``model_args.json``: the official fields with those sizes, ``opt_version: "opt"`` and
  ``visual_encoder: "clip"`` (folders beside it), and gill-eval's ``sd_version: "sd"``;
* ``decision_model.pth.tar``: ``{'state_dict': {'1.weight': (2, 64), '1.bias': (2,)}}``;
* ``opt/``: a tiny ``OPTForCausalLM`` (``OPTConfig``) with a tiny byte-level BPE tokenizer carrying OPT's
  special tokens (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2 = BOS = EOS, ``<unk>`` 3). Its base vocabulary has V
  entries, so ``<|image|>`` gets V and [IMG0..7] V+1..V+8, the same rule that gives 50265 and 50266..50273
  with OPT's real 50265-entry vocabulary; the LM has V rounded up to a multiple of 8 rows, as OPT's 50272,
  so the resize grows it exactly as for the real model;
* ``clip/``: a tiny ``CLIPVisionModel`` (32x32 images) and its PIL image processor;
* ``sd/``: a copy of ``gill_eval.models.tiny.tiny_sd_dir()`` (diffusers folder, PNDM, 64x64 images).
"""

from __future__ import annotations

import json
import math
import shutil
from collections import OrderedDict
from pathlib import Path

import torch

from gill_eval.models.gill.checkpoint import ARGS_FILE, CHECKPOINT_FILE, DECISION_FILE, EMBEDDING_KEY
from gill_eval.models.gill.decision import build_decision_model
from gill_eval.models.gill.mapper import GILLHeads, HeadDims
from gill_eval.models.gill.tokenizer import NUM_IMG_TOKENS

TINY_LM_DIM = 64
TINY_CLIP_DIM = 32
TINY_RET_DIM = 16
TINY_MAPPER_DIM = 32
TINY_MAPPER_FF = 64
_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
_WORDS = ("a photo of the dog cat bird man woman child car tree house sky sun beach mountain river city "
          "red blue green yellow white black small big old young happy running sitting standing on in at "
          "with and near under over story day night family friends party food table street park water snow "
          "Q: A: what is there ? . , ! picture image draw show me an how many people").split()


def _corpus() -> list[str]:
    """A small fixed corpus: enough for a few hundred BPE merges, deterministic."""
    n = len(_WORDS)
    return [" ".join(_WORDS[(i * k + k * k) % n] for k in range(1, 12)) for i in range(400)]


def build_tiny_tokenizer(folder: Path) -> int:
    """Train a byte-level BPE with OPT's special tokens and save it as a GPT-2 tokenizer; returns V."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Tokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_corpus(), vocab_size=500, min_frequency=2, special_tokens=_SPECIALS, show_progress=False)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tokenizer = GPT2Tokenizer(vocab=model["vocab"], merges=merges, bos_token="</s>", eos_token="</s>",
                              pad_token="<pad>", unk_token="<unk>", add_bos_token=True)
    tokenizer.save_pretrained(folder)
    return len(tokenizer)


def _tiny_opt(folder: Path, base_vocab: int, seed: int) -> None:
    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(seed)
    config = OPTConfig(vocab_size=8 * math.ceil(base_vocab / 8), hidden_size=TINY_LM_DIM, num_hidden_layers=2,
                       ffn_dim=128, num_attention_heads=4, max_position_embeddings=2048,
                       word_embed_proj_dim=TINY_LM_DIM, pad_token_id=1, bos_token_id=2, eos_token_id=2)
    OPTForCausalLM(config).save_pretrained(folder)


def _tiny_clip(folder: Path, seed: int) -> None:
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    config = CLIPVisionConfig(hidden_size=TINY_CLIP_DIM, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, image_size=32, patch_size=8, projection_dim=16)
    CLIPVisionModel(config).save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)


def tiny_dims(gen_emb_dim: int) -> HeadDims:
    """The scaled-down head sizes of the tiny GILL."""
    return HeadDims(lm_dim=TINY_LM_DIM, clip_dim=TINY_CLIP_DIM, n_visual_tokens=4, ret_emb_dim=TINY_RET_DIM,
                    gen_emb_dim=gen_emb_dim, num_clip_tokens=77, mapper_dim=TINY_MAPPER_DIM,
                    mapper_ff=TINY_MAPPER_FF)


def official_state_dict(dims: HeadDims, seed: int, full_vocab: int | None = None) -> OrderedDict[str, torch.Tensor]:
    """Seeded random heads + [IMG] rows under the official key names (``model.`` prefix), sorted, bf16.

    ``full_vocab`` stores a full-size embedding matrix (its last 8 rows are the [IMG] rows) instead of the
    pruned 8 rows, the other layout the loader accepts.
    """
    torch.manual_seed(seed)
    heads = GILLHeads(dims)
    with torch.no_grad():
        heads.logit_scale.fill_(math.log(1 / 0.07))
        heads.gen_text_hidden_fcs[0].query_embs.normal_(0.0, 1.0)
    state = {f"model.{k}": v for k, v in heads.state_dict().items()}
    rows = torch.randn(full_vocab or NUM_IMG_TOKENS, dims.lm_dim)
    state[EMBEDDING_KEY] = rows
    return OrderedDict((k, state[k].to(torch.bfloat16).contiguous()) for k in sorted(state))


def build_tiny_gill(folder: Path, sd_dir: Path, seed: int = 0) -> None:
    """Write the tiny GILL into ``folder`` (see the module docstring); ``sd_dir`` is a tiny SD folder."""
    from diffusers import UNet2DConditionModel

    folder.mkdir(parents=True, exist_ok=True)
    base_vocab = build_tiny_tokenizer(folder / "opt")
    _tiny_opt(folder / "opt", base_vocab, seed)
    _tiny_clip(folder / "clip", seed)
    shutil.copytree(sd_dir, folder / "sd", dirs_exist_ok=True)
    gen_dim = int(UNet2DConditionModel.load_config(folder / "sd" / "unet")["cross_attention_dim"])
    dims = tiny_dims(gen_dim)
    torch.save({"state_dict": official_state_dict(dims, seed)}, folder / CHECKPOINT_FILE)
    torch.manual_seed(seed + 1)
    decision = build_decision_model(dims.lm_dim)
    torch.save({"state_dict": decision.state_dict()}, folder / DECISION_FILE)
    img_ids = list(range(base_vocab + 1, base_vocab + 1 + NUM_IMG_TOKENS))
    args = {
        "opt_version": "opt", "freeze_lm": True, "visual_encoder": "clip", "freeze_vm": True,
        "n_visual_tokens": dims.n_visual_tokens, "ret_emb_dim": dims.ret_emb_dim, "gen_emb_dim": dims.gen_emb_dim,
        "text_emb_layers": [-1], "text_fc_mode": "gill_mapper", "ret_text_fc_mode": "linear",
        "num_tokens": NUM_IMG_TOKENS, "num_clip_tokens": dims.num_clip_tokens, "share_ret_gen": True,
        "norm_image_embed": "none", "retrieval_token_idx": img_ids, "gen_token_idx": img_ids, "sd_version": "sd",
    }
    (folder / ARGS_FILE).write_text(json.dumps(args, indent=2) + "\n", encoding="utf-8")


def tiny_gill_dir(root: Path | None = None, seed: int = 0) -> Path:
    """The tiny GILL folder, built once under ``cache_root()/tiny`` (or ``root``) and reused."""
    from gill_eval.models.tiny import cached_build, tiny_sd_dir

    sd_dir = tiny_sd_dir(root=root, seed=seed)
    return cached_build("gill2", root, seed, lambda folder: build_tiny_gill(folder, sd_dir, seed))
