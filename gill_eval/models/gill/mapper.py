"""GILL's trained heads, with the official parameter names so the checkpoint loads key for key.

``GILLHeads.state_dict()`` keys are the checkpoint's keys without the leading ``model.`` (and without
``input_embeddings.weight``, which lives in the LM's embedding matrix): ``visual_embeddings.*``,
``visual_fc.*``, ``logit_scale``, ``ret_text_hidden_fcs.0.model.*`` and ``gen_text_hidden_fcs.0.{fc,tfm,
model,query_embs}``. Dimensions are parameters so the tiny GILL uses the same classes with small shapes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

MAPPER_HEADS = 4
MAPPER_LAYERS = 4


@dataclass(frozen=True)
class HeadDims:
    """Every size the heads need. Official: lm 4096, clip 1024, 4 visual tokens, 256, 768, 77, 512, 2048."""

    lm_dim: int
    clip_dim: int
    n_visual_tokens: int
    ret_emb_dim: int
    gen_emb_dim: int
    num_clip_tokens: int
    mapper_dim: int
    mapper_ff: int
    num_tokens: int = 8


class GILLMapper(nn.Module):
    """TextFcLayer in ``gill_mapper`` mode: 8 [IMG] states -> ``num_clip_tokens`` x ``gen_emb_dim``.

    x = fc(h + e); y = Transformer(src=x, tgt=learned queries) with no masks (pre-LN, ReLU, dropout 0);
    out = model(y). ``h`` are the final LM states at the [IMG] positions, ``e`` their input embeddings.
    """

    def __init__(self, dims: HeadDims) -> None:
        super().__init__()
        self.fc = nn.Linear(dims.lm_dim, dims.mapper_dim)
        with warnings.catch_warnings():  # "enable_nested_tensor ... norm_first": a fast-path note, not a problem
            warnings.filterwarnings("ignore", message="enable_nested_tensor", category=UserWarning)
            self.tfm = nn.Transformer(
                d_model=dims.mapper_dim, nhead=MAPPER_HEADS, num_encoder_layers=MAPPER_LAYERS,
                num_decoder_layers=MAPPER_LAYERS, dim_feedforward=dims.mapper_ff, dropout=0.0,
                activation=nn.ReLU(), layer_norm_eps=1e-5, batch_first=True, norm_first=True,
            )
        self.model = nn.Linear(dims.mapper_dim, dims.gen_emb_dim)
        self.query_embs = nn.Parameter(torch.zeros(1, dims.num_clip_tokens, dims.mapper_dim))

    def forward(self, hidden: torch.Tensor, img_embs: torch.Tensor) -> torch.Tensor:
        """(B, 8, lm_dim) states and (B, 8, lm_dim) [IMG] embeddings -> (B, num_clip_tokens, gen_emb_dim)."""
        x = self.fc(hidden + img_embs)
        queries = self.query_embs.expand(x.shape[0], -1, -1)
        return self.model(self.tfm(src=x, tgt=queries))


class RetrievalHead(nn.Module):
    """TextFcLayer in ``linear`` mode: one Linear over the 8 states, cut to the first (so only [IMG0])."""

    def __init__(self, dims: HeadDims) -> None:
        super().__init__()
        self.model = nn.Linear(dims.lm_dim, dims.ret_emb_dim)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, 8, lm_dim) -> (B, 1, ret_emb_dim), not normalised."""
        return self.model(hidden)[:, :1]


class GILLHeads(nn.Module):
    """Everything trained in GILL except the 8 [IMG] embedding rows."""

    def __init__(self, dims: HeadDims) -> None:
        super().__init__()
        self.dims = dims
        self.visual_embeddings = nn.Linear(dims.clip_dim, dims.lm_dim * dims.n_visual_tokens)
        self.visual_fc = nn.Linear(dims.clip_dim, dims.ret_emb_dim)
        self.logit_scale = nn.Parameter(torch.zeros(()))
        self.ret_text_hidden_fcs = nn.ModuleList([RetrievalHead(dims)])
        self.gen_text_hidden_fcs = nn.ModuleList([GILLMapper(dims)])

    def visual_tokens(self, pooled: torch.Tensor) -> torch.Tensor:
        """CLIP pooled output (B, clip_dim) -> (B, n_visual_tokens, lm_dim), token k = slice k (row-major)."""
        return self.visual_embeddings(pooled).reshape(pooled.shape[0], self.dims.n_visual_tokens, self.dims.lm_dim)

    def retrieval_image(self, pooled: torch.Tensor) -> torch.Tensor:
        """CLIP pooled output -> (B, ret_emb_dim) ``visual_fc`` embedding, not normalised."""
        return self.visual_fc(pooled)

    def retrieval_text(self, img_hidden: torch.Tensor) -> torch.Tensor:
        """(B, 8, lm_dim) [IMG] states -> (B, ret_emb_dim) from [IMG0], not normalised."""
        return self.ret_text_hidden_fcs[0](img_hidden)[:, 0]

    def generation(self, img_hidden: torch.Tensor, img_embs: torch.Tensor) -> torch.Tensor:
        """(B, 8, lm_dim) states + [IMG] embeddings -> SD ``prompt_embeds`` (B, 77, gen_emb_dim)."""
        return self.gen_text_hidden_fcs[0](img_hidden, img_embs)
