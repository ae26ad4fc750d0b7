"""GILL's released-file loaders against the spec (specs/gill-model.md §1), with synthetic files.

The official key names are written out here by hand from the spec, independently of the loader's own
table, and the official totals (137 tensors, 50,096,385 parameters) check the loader's shapes.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from gill_eval.errors import InputError
from gill_eval.models.gill.checkpoint import head_shapes, load_checkpoint, read_model_args
from gill_eval.models.gill.decision import decision_labels, decision_probabilities, load_decision_model
from gill_eval.models.gill.mapper import GILLHeads, HeadDims

OFFICIAL = HeadDims(lm_dim=4096, clip_dim=1024, n_visual_tokens=4, ret_emb_dim=256, gen_emb_dim=768,
                    num_clip_tokens=77, mapper_dim=512, mapper_ff=2048)
SMALL = HeadDims(lm_dim=16, clip_dim=8, n_visual_tokens=4, ret_emb_dim=6, gen_emb_dim=12, num_clip_tokens=77,
                 mapper_dim=8, mapper_ff=20)
VOCAB = 40  # the small tokenizer's len() after the additions (the real one is 50274)


def spec_keys(d: HeadDims) -> dict[str, tuple[int, ...]]:
    """The 137 official tensors, transcribed from spec §1.2 (scaled by ``d``)."""
    m, ff, lm = d.mapper_dim, d.mapper_ff, d.lm_dim
    keys = {
        "model.input_embeddings.weight": (8, lm),
        "model.logit_scale": (),
        "model.visual_embeddings.weight": (lm * 4, d.clip_dim),
        "model.visual_embeddings.bias": (lm * 4,),
        "model.visual_fc.weight": (d.ret_emb_dim, d.clip_dim),
        "model.visual_fc.bias": (d.ret_emb_dim,),
        "model.ret_text_hidden_fcs.0.model.weight": (d.ret_emb_dim, lm),
        "model.ret_text_hidden_fcs.0.model.bias": (d.ret_emb_dim,),
        "model.gen_text_hidden_fcs.0.fc.weight": (m, lm),
        "model.gen_text_hidden_fcs.0.fc.bias": (m,),
        "model.gen_text_hidden_fcs.0.model.weight": (d.gen_emb_dim, m),
        "model.gen_text_hidden_fcs.0.model.bias": (d.gen_emb_dim,),
        "model.gen_text_hidden_fcs.0.query_embs": (1, 77, m),
    }
    tfm = "model.gen_text_hidden_fcs.0.tfm."

    def attn(prefix: str) -> None:
        keys[prefix + ".in_proj_weight"] = (3 * m, m)
        keys[prefix + ".in_proj_bias"] = (3 * m,)
        keys[prefix + ".out_proj.weight"] = (m, m)
        keys[prefix + ".out_proj.bias"] = (m,)

    for i in range(4):
        for stack, blocks, norms in (("encoder", ["self_attn"], 2), ("decoder", ["self_attn", "multihead_attn"], 3)):
            layer = f"{tfm}{stack}.layers.{i}."
            for block in blocks:
                attn(layer + block)
            keys[layer + "linear1.weight"], keys[layer + "linear1.bias"] = (ff, m), (ff,)
            keys[layer + "linear2.weight"], keys[layer + "linear2.bias"] = (m, ff), (m,)
            for n in range(1, norms + 1):
                keys[f"{layer}norm{n}.weight"] = keys[f"{layer}norm{n}.bias"] = (m,)
    for stack in ("encoder", "decoder"):
        keys[f"{tfm}{stack}.norm.weight"] = keys[f"{tfm}{stack}.norm.bias"] = (m,)
    return keys


def test_official_layout_totals_match_the_released_file() -> None:
    keys = spec_keys(OFFICIAL)
    assert len(keys) == 137
    assert sum(math.prod(s) for s in keys.values()) == 50_096_385
    loader = head_shapes(OFFICIAL)
    assert loader == {k: v for k, v in keys.items() if k != "model.input_embeddings.weight"}


def test_heads_module_names_are_the_checkpoint_names() -> None:
    names = {f"model.{k}": tuple(v.shape) for k, v in GILLHeads(SMALL).state_dict().items()}
    assert names == {k: v for k, v in spec_keys(SMALL).items() if k != "model.input_embeddings.weight"}


def _args_file(folder: Path, d: HeadDims = SMALL, **override) -> Path:
    args = {"opt_version": "facebook/opt-6.7b", "freeze_lm": True, "visual_encoder": "openai/clip-vit-large-patch14",
            "freeze_vm": True, "n_visual_tokens": d.n_visual_tokens, "ret_emb_dim": d.ret_emb_dim,
            "gen_emb_dim": d.gen_emb_dim, "text_emb_layers": [-1], "text_fc_mode": "gill_mapper",
            "ret_text_fc_mode": "linear", "num_tokens": 8, "num_clip_tokens": 77, "share_ret_gen": True,
            "norm_image_embed": "none", "retrieval_token_idx": list(range(50266, 50274)),
            "gen_token_idx": list(range(50266, 50274)), "some_future_field": 1}
    args.update(override)
    path = folder / "model_args.json"
    path.write_text(json.dumps(args))
    return path


def _synthetic(folder: Path, prefix=lambda k: k, full_vocab: int | None = None, drop: str | None = None,
               extra_top: bool = False, extra_key: str | None = None) -> tuple[Path, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    state: dict[str, torch.Tensor] = OrderedDict()
    raw: dict[str, torch.Tensor] = {}
    for key, shape in sorted(spec_keys(SMALL).items()):
        if key == "model.input_embeddings.weight" and full_vocab:
            shape = (full_vocab, SMALL.lm_dim)
        tensor = torch.randn(shape, generator=gen).to(torch.bfloat16)
        raw[key] = tensor
        if key != drop:
            state[prefix(key)] = tensor
    if extra_key:
        state[extra_key] = torch.zeros(3)
    blob: dict = {"state_dict": state}
    if extra_top:
        blob.update(epoch=3, best_acc1=torch.tensor(0.5))
    path = folder / "pretrained_ckpt.pth.tar"
    torch.save(blob, path)
    return path, raw


@pytest.mark.parametrize(
    "prefix", [lambda k: k, lambda k: "module." + k, lambda k: k.replace("model.", "model.module.", 1)],
    ids=["plain", "module-first", "module-inside"])
def test_loader_accepts_official_layout(tmp_path: Path, prefix) -> None:
    args = read_model_args(_args_file(tmp_path))
    path, raw = _synthetic(tmp_path, prefix=prefix, extra_top=True)
    loaded = load_checkpoint(path, args, lm_dim=SMALL.lm_dim, clip_dim=SMALL.clip_dim, vocab_size=VOCAB)
    assert loaded.dims == SMALL
    assert loaded.dtype == torch.bfloat16
    assert loaded.unexpected == []
    torch.testing.assert_close(loaded.img_rows, raw["model.input_embeddings.weight"], rtol=0, atol=0)
    heads = GILLHeads(loaded.dims)
    heads.load_state_dict(loaded.heads, strict=True)
    torch.testing.assert_close(heads.visual_fc.weight.to(torch.bfloat16), raw["model.visual_fc.weight"], rtol=0, atol=0)


def test_loader_takes_last_8_rows_of_a_full_embedding(tmp_path: Path) -> None:
    args = read_model_args(_args_file(tmp_path))
    path, raw = _synthetic(tmp_path, full_vocab=VOCAB)
    loaded = load_checkpoint(path, args, lm_dim=SMALL.lm_dim, clip_dim=SMALL.clip_dim, vocab_size=VOCAB)
    torch.testing.assert_close(loaded.img_rows, raw["model.input_embeddings.weight"][VOCAB - 8:], rtol=0, atol=0)
    assert any("last 8 rows" in note for note in loaded.notes)


@pytest.mark.parametrize("drop", ["model.gen_text_hidden_fcs.0.tfm.decoder.layers.3.norm3.bias",
                                  "model.input_embeddings.weight", "model.logit_scale",
                                  "model.gen_text_hidden_fcs.0.fc.weight"])
def test_loader_rejects_a_missing_key_naming_it(tmp_path: Path, drop: str) -> None:
    args = read_model_args(_args_file(tmp_path))
    path, _ = _synthetic(tmp_path, drop=drop)
    with pytest.raises(InputError, match=f"missing required key '{drop}'"):
        load_checkpoint(path, args, lm_dim=SMALL.lm_dim, clip_dim=SMALL.clip_dim, vocab_size=VOCAB)


def test_loader_reports_unexpected_keys_and_wrong_shapes(tmp_path: Path) -> None:
    args = read_model_args(_args_file(tmp_path))
    path, _ = _synthetic(tmp_path, extra_key="model.old_head.weight")
    loaded = load_checkpoint(path, args, lm_dim=SMALL.lm_dim, clip_dim=SMALL.clip_dim, vocab_size=VOCAB)
    assert loaded.unexpected == ["model.old_head.weight"]
    wrong = read_model_args(_args_file(tmp_path, ret_emb_dim=7))
    with pytest.raises(InputError, match="'model.visual_fc.weight' has shape"):
        load_checkpoint(path, wrong, lm_dim=SMALL.lm_dim, clip_dim=SMALL.clip_dim, vocab_size=VOCAB)
    odd_rows, _ = _synthetic(tmp_path, full_vocab=VOCAB + 3)  # neither 8 rows nor the vocabulary size
    with pytest.raises(InputError, match="input_embeddings.weight has shape"):
        load_checkpoint(odd_rows, args, lm_dim=SMALL.lm_dim, clip_dim=SMALL.clip_dim, vocab_size=VOCAB)


def test_model_args_checks(tmp_path: Path) -> None:
    args = read_model_args(_args_file(tmp_path))
    assert (args.opt_version, args.visual_encoder, args.num_clip_tokens, args.sd_version) == (
        "facebook/opt-6.7b", "openai/clip-vit-large-patch14", 77, None)
    with pytest.raises(InputError, match="'text_fc_mode'"):
        read_model_args(_args_file(tmp_path, text_fc_mode="linear"))
    with pytest.raises(InputError, match="'num_tokens'"):
        read_model_args(_args_file(tmp_path, num_tokens=4))
    path = _args_file(tmp_path)
    data = json.loads(path.read_text())
    del data["gen_emb_dim"]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="missing field 'gen_emb_dim'"):
        read_model_args(path)


def test_official_decision_file_loads_and_scores(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(1)
    weight, bias = torch.randn(2, 4096, generator=gen) * 0.02, torch.tensor([-0.0100, -0.0029])
    path = tmp_path / "decision_model.pth.tar"
    torch.save({"state_dict": OrderedDict([("1.weight", weight), ("1.bias", bias)])}, path)
    model = load_decision_model(path, 4096, torch.float32)  # the fp32 option (bf16: tests/test_parity_gill_numerics.py)
    feats = np.random.default_rng(0).normal(size=(5, 4096)).astype(np.float32)
    probs = decision_probabilities(model, feats)
    logits = feats.astype(np.float64) @ weight.double().numpy().T + bias.double().numpy()
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert decision_labels(logits) == ["gen" if p[0] >= p[1] else "ret" for p in expected]
    torch.save({"state_dict": OrderedDict([("0.weight", weight), ("1.bias", bias)])}, path)
    with pytest.raises(InputError, match="missing required key '1.weight'"):
        load_decision_model(path, 4096)
