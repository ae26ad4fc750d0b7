"""GILL's heads against hand-written reference computations (explicit matmuls, softmax, layer norm).

The reference implements spec §3 from the state dict alone, in float64 numpy: pre-LN encoder
(x += SA(LN1 x); x += FFN(LN2 x)), final encoder norm, pre-LN decoder with self-attention, cross-attention
on the normed memory and FFN, final decoder norm, no masks, 4 heads, in_proj rows stacked [Wq; Wk; Wv].
"""

from __future__ import annotations

import numpy as np
import torch

from gill_eval.models.gill.mapper import GILLHeads, GILLMapper, HeadDims

DIMS = HeadDims(lm_dim=24, clip_dim=10, n_visual_tokens=4, ret_emb_dim=6, gen_emb_dim=12, num_clip_tokens=77,
                mapper_dim=16, mapper_ff=40)
HEADS = 4


def _randomised(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter random (norm weights and biases too, so an ignored norm is caught)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return module.eval()


def _ln(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * w + b


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _mha(q_in: np.ndarray, kv_in: np.ndarray, sd: dict, prefix: str) -> np.ndarray:
    w, b = sd[prefix + "in_proj_weight"], sd[prefix + "in_proj_bias"]
    d = q_in.shape[-1]
    q = q_in @ w[:d].T + b[:d]
    k = kv_in @ w[d:2 * d].T + b[d:2 * d]
    v = kv_in @ w[2 * d:].T + b[2 * d:]
    hd = d // HEADS
    outs = []
    for h in range(HEADS):
        sl = slice(h * hd, (h + 1) * hd)
        scores = q[:, sl] @ k[:, sl].T / np.sqrt(hd)
        outs.append(_softmax(scores) @ v[:, sl])
    return np.concatenate(outs, -1) @ sd[prefix + "out_proj.weight"].T + sd[prefix + "out_proj.bias"]


def _ffn(x: np.ndarray, sd: dict, prefix: str) -> np.ndarray:
    hidden = np.maximum(x @ sd[prefix + "linear1.weight"].T + sd[prefix + "linear1.bias"], 0.0)
    return hidden @ sd[prefix + "linear2.weight"].T + sd[prefix + "linear2.bias"]


def reference_mapper(sd: dict, hidden: np.ndarray, embs: np.ndarray) -> np.ndarray:
    """One example: (8, lm) states + (8, lm) embeddings -> (77, gen)."""
    n = lambda p, x: _ln(x, sd[p + ".weight"], sd[p + ".bias"])  # noqa: E731
    x = (hidden + embs) @ sd["fc.weight"].T + sd["fc.bias"]
    for i in range(4):
        p = f"tfm.encoder.layers.{i}."
        h = n(p + "norm1", x)
        x = x + _mha(h, h, sd, p + "self_attn.")
        x = x + _ffn(n(p + "norm2", x), sd, p)
    memory = n("tfm.encoder.norm", x)
    t = sd["query_embs"][0]
    for i in range(4):
        p = f"tfm.decoder.layers.{i}."
        h = n(p + "norm1", t)
        t = t + _mha(h, h, sd, p + "self_attn.")
        t = t + _mha(n(p + "norm2", t), memory, sd, p + "multihead_attn.")
        t = t + _ffn(n(p + "norm3", t), sd, p)
    t = n("tfm.decoder.norm", t)
    return t @ sd["model.weight"].T + sd["model.bias"]


def test_mapper_matches_hand_written_pre_ln_transformer() -> None:
    mapper = _randomised(GILLMapper(DIMS), seed=0)
    sd = {k: v.double().numpy() for k, v in mapper.state_dict().items()}
    gen = torch.Generator().manual_seed(1)
    hidden = torch.randn(3, 8, DIMS.lm_dim, generator=gen)
    embs = torch.randn(3, 8, DIMS.lm_dim, generator=gen)
    with torch.no_grad():
        out = mapper(hidden, embs)
    assert out.shape == (3, 77, DIMS.gen_emb_dim)
    for b in range(3):
        ref = reference_mapper(sd, hidden[b].double().numpy(), embs[b].double().numpy())
        np.testing.assert_allclose(out[b].numpy(), ref, atol=1e-5, rtol=0)


def test_retrieval_head_uses_only_img0_and_visual_tokens_are_row_major() -> None:
    heads = _randomised(GILLHeads(DIMS), seed=2)
    gen = torch.Generator().manual_seed(3)
    hidden = torch.randn(2, 8, DIMS.lm_dim, generator=gen)
    changed = hidden.clone()
    changed[:, 1:] = torch.randn(2, 7, DIMS.lm_dim, generator=gen)
    with torch.no_grad():
        ret = heads.retrieval_text(hidden)
        torch.testing.assert_close(heads.retrieval_text(changed), ret)
        w, b = heads.ret_text_hidden_fcs[0].model.weight, heads.ret_text_hidden_fcs[0].model.bias
        torch.testing.assert_close(ret, hidden[:, 0] @ w.T + b)

        pooled = torch.randn(2, DIMS.clip_dim, generator=gen)
        tokens = heads.visual_tokens(pooled)
        W, B = heads.visual_embeddings.weight, heads.visual_embeddings.bias
        d = DIMS.lm_dim
        for k in range(4):
            torch.testing.assert_close(tokens[:, k], pooled @ W[k * d:(k + 1) * d].T + B[k * d:(k + 1) * d])
