"""GLIDE's text encoder: a pre-norm transformer (no causal mask, no attention mask) over 128 token slots.

Padding is handled by the embedding, not by attention: where the mask is False the slot's input is a learnt
per-position ``padding_embedding`` instead of token + position. The encoder's last slot, projected to the
UNet's embedding width, is added to the timestep embedding; all slots are the keys and values of the UNet's
attention layers. Parameter names are glide-text2im's (``transformer.resblocks.N.attn.c_qkv`` ...).
"""

from __future__ import annotations

import torch
from torch import nn


class FloatLayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 whatever the input's dtype (fp32 gains), cast back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused q/k/v projection laid out per head as [q | k | v]."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.c_qkv = nn.Linear(width, 3 * width)
        self.c_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        head_dim = width // self.heads
        q, k, v = self.c_qkv(x).view(batch, length, self.heads, 3 * head_dim).split(head_dim, dim=-1)
        scale = head_dim ** -0.25  # on q and k separately: keeps fp16 logits in range
        logits = torch.einsum("bqhc,bkhc->bhqk", q * scale, k * scale)
        weights = torch.softmax(logits.float(), dim=-1).to(logits.dtype)
        return self.c_proj(torch.einsum("bhqk,bkhc->bqhc", weights, v).reshape(batch, length, width))


class MLP(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    """x + attn(ln_1(x)), then + mlp(ln_2(x))."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = SelfAttention(width, heads)
        self.ln_1 = FloatLayerNorm(width)
        self.mlp = MLP(width)
        self.ln_2 = FloatLayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"xf_width {width} is not divisible by xf_heads {heads}")
        self.resblocks = nn.ModuleList(Block(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


def half_linear_layers(module: nn.Module) -> None:
    """glide-text2im's fp16 conversion of the text tower: its Linear layers only (LayerNorms stay fp32)."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            layer.half()

