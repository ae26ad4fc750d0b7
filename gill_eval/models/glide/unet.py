"""GLIDE's text-conditional ADM UNet (Dhariwal & Nichol's architecture with text conditioning).

Structure, as in glide-text2im so that the released checkpoints load by name: ``time_embed`` (sinusoid ->
Linear -> SiLU -> Linear); ``input_blocks`` (a stem conv, then per level ``num_res_blocks`` residual
blocks, each followed by attention at the chosen downsampling rates, and a downsampling residual block
between levels); ``middle_block`` (res, attention, res); ``output_blocks`` (``num_res_blocks + 1`` blocks
per level reading the skip connections, an upsampling residual block closing each level but the last);
``out`` (GroupNorm + SiLU + conv to 6 channels: eps and the variance interpolation). Residual blocks use
FiLM (scale-shift) conditioning on the timestep + text embedding; every attention layer also attends to
the text encoder's outputs (their keys/values first). The super-resolution model reads the low-resolution
image, bilinearly resized, as three extra input channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gill_eval.models.glide.text import FloatLayerNorm, Transformer, half_linear_layers


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps: [cos | sin] over ``dim // 2`` frequencies
    from 1 down to 1/max_period (a zero column appended for odd ``dim``)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half).to(timesteps.device)
    angles = timesteps[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class GroupNorm32(nn.GroupNorm):
    """GroupNorm over 32 groups computed in fp32, optionally followed by SiLU, cast back to the input dtype."""

    def __init__(self, channels: int, silu: bool) -> None:
        super().__init__(num_groups=32, num_channels=channels)
        self.silu = silu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x.float()).to(x.dtype)
        return F.silu(y) if self.silu else y


class Resample(nn.Module):
    """Nearest-neighbour x2 upsampling or 2x2 average pooling (no weights)."""

    def __init__(self, up: bool) -> None:
        super().__init__()
        self.up = up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest") if self.up else F.avg_pool2d(x, 2, 2)


class ResBlock(nn.Module):
    """Norm-SiLU-conv, FiLM by the embedding, norm-SiLU-(dropout)-conv, plus a (1x1-projected) skip; with
    ``resample`` both paths are resampled between the first norm and the first conv."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int, dropout: float, scale_shift: bool,
                 resample: str | None = None) -> None:
        super().__init__()
        self.scale_shift = scale_shift
        self.in_layers = nn.Sequential(GroupNorm32(channels, silu=True), nn.Identity(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.resample = resample is not None
        if resample is not None:
            self.h_upd = Resample(resample == "up")
            self.x_upd = Resample(resample == "up")
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, (2 if scale_shift else 1) * out_channels))
        self.out_layers = nn.Sequential(GroupNorm32(out_channels, silu=not scale_shift),
                                        nn.SiLU() if scale_shift else nn.Identity(), nn.Dropout(dropout),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = (nn.Identity() if out_channels == channels
                                else nn.Conv2d(channels, out_channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.resample:
            h = self.in_layers[1](self.in_layers[0](x))
            h, x = self.in_layers[2](self.h_upd(h)), self.x_upd(x)
        else:
            h = self.in_layers(x)
        film = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        if self.scale_shift:
            scale, shift = film.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[3](self.out_layers[2](self.out_layers[1](h)))
        else:
            h = self.out_layers(h + film)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Spatial self-attention whose keys/values are prefixed by the text encoder's (``encoder_kv``)."""

    def __init__(self, channels: int, head_channels: int, heads: int, text_channels: int | None) -> None:
        super().__init__()
        if head_channels != -1:
            if channels % head_channels:
                raise ValueError(f"{channels} channels are not divisible by num_head_channels {head_channels}")
            heads = channels // head_channels
        self.heads = heads
        self.norm = GroupNorm32(channels, silu=False)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        if text_channels is not None:
            self.encoder_kv = nn.Conv1d(text_channels, 2 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        batch, channels, height, width = x.shape
        ch = channels // self.heads
        qkv = self.qkv(self.norm(x).view(batch, channels, -1))
        q, k, v = qkv.reshape(batch * self.heads, 3 * ch, -1).split(ch, dim=1)
        if text is not None:
            text_k, text_v = self.encoder_kv(text).reshape(batch * self.heads, 2 * ch, -1).split(ch, dim=1)
            k, v = torch.cat([text_k, k], dim=-1), torch.cat([text_v, v], dim=-1)
        scale = ch ** -0.25
        logits = torch.einsum("bct,bcs->bts", q * scale, k * scale)
        weights = torch.softmax(logits.float(), dim=-1).to(logits.dtype)
        h = torch.einsum("bts,bcs->bct", weights, v).reshape(batch, channels, -1)
        return x + self.proj_out(h).reshape(batch, channels, height, width)


class Stage(nn.ModuleList):
    """One entry of input/middle/output blocks: layers applied in order, each given what it reads."""

    def forward(self, h: torch.Tensor, emb: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            if isinstance(layer, ResBlock):
                h = layer(h, emb)
            elif isinstance(layer, AttentionBlock):
                h = layer(h, text)
            else:
                h = layer(h)
        return h


@dataclass(frozen=True)
class UNetConfig:
    """The architecture; field names follow glide-text2im's ``create_model`` arguments."""

    image_size: int
    num_channels: int
    num_res_blocks: int
    channel_mult: tuple[int, ...]
    attention_ds: tuple[int, ...]  # downsampling rates with attention (image_size // resolution)
    num_heads: int
    num_head_channels: int
    num_heads_upsample: int
    dropout: float
    text_ctx: int
    xf_width: int
    xf_layers: int
    xf_heads: int
    xf_final_ln: bool
    xf_padding: bool
    use_scale_shift_norm: bool
    resblock_updown: bool
    super_res: bool
    n_vocab: int


@dataclass
class TextConditioning:
    """The text encoder's outputs for a batch: ``proj`` (added to the timestep embedding) and ``tokens``
    (N x width x 128, the attention layers' extra keys/values). Independent of x and t: computed once per
    sampling loop."""

    proj: torch.Tensor
    tokens: torch.Tensor


class Text2ImUNet(nn.Module):
    """The text-conditional UNet (eps and variance outputs); ``super_res`` adds the low-resolution input."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        self.dtype = torch.float32
        c = config.num_channels
        emb = 4 * c
        text = config.xf_width or None
        heads_up = config.num_heads if config.num_heads_upsample == -1 else config.num_heads_upsample
        self.time_embed = nn.Sequential(nn.Linear(c, emb), nn.SiLU(), nn.Linear(emb, emb))

        def res(cin: int, cout: int, resample: str | None = None) -> ResBlock:
            return ResBlock(cin, emb, cout, config.dropout, config.use_scale_shift_norm, resample)

        def attn(ch: int, heads: int) -> AttentionBlock:
            return AttentionBlock(ch, config.num_head_channels, heads, text)

        in_channels = 6 if config.super_res else 3
        ch = config.channel_mult[0] * c
        stem = ch
        self.input_blocks = nn.ModuleList([Stage([nn.Conv2d(in_channels, ch, 3, padding=1)])])
        skips = [ch]
        ds = 1
        last = len(config.channel_mult) - 1
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.num_res_blocks):
                layers: list[nn.Module] = [res(ch, mult * c)]
                ch = mult * c
                if ds in config.attention_ds:
                    layers.append(attn(ch, config.num_heads))
                self.input_blocks.append(Stage(layers))
                skips.append(ch)
            if level != last:
                self.input_blocks.append(Stage([res(ch, ch, "down") if config.resblock_updown else
                                                ConvResample(ch, up=False)]))
                skips.append(ch)
                ds *= 2
        self.middle_block = Stage([res(ch, ch), attn(ch, config.num_heads), res(ch, ch)])
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            for i in range(config.num_res_blocks + 1):
                layers = [res(ch + skips.pop(), mult * c)]
                ch = mult * c
                if ds in config.attention_ds:
                    layers.append(attn(ch, heads_up))
                if level and i == config.num_res_blocks:
                    layers.append(res(ch, ch, "up") if config.resblock_updown else ConvResample(ch, up=True))
                    ds //= 2
                self.output_blocks.append(Stage(layers))
        self.out = nn.Sequential(GroupNorm32(ch, silu=True), nn.Identity(), nn.Conv2d(stem, 6, 3, padding=1))
        if text is not None:  # registered last, as in the package (same state-dict order)
            self.transformer = Transformer(config.xf_width, config.xf_layers, config.xf_heads)
            self.final_ln = FloatLayerNorm(config.xf_width) if config.xf_final_ln else None
            self.token_embedding = nn.Embedding(config.n_vocab, config.xf_width)
            self.positional_embedding = nn.Parameter(torch.zeros(config.text_ctx, config.xf_width))
            self.transformer_proj = nn.Linear(config.xf_width, emb)
            if config.xf_padding:
                self.padding_embedding = nn.Parameter(torch.zeros(config.text_ctx, config.xf_width))

    def convert_to_fp16(self) -> None:
        """glide-text2im's mixed precision: the torso's convolutions and the text tower's Linear layers and
        token embedding in fp16; embeddings' MLPs, norms, positional tables and the output head stay fp32."""
        for part in (self.input_blocks, self.middle_block, self.output_blocks):
            for layer in part.modules():
                if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
                    layer.half()
        if self.config.xf_width:
            half_linear_layers(self.transformer)
            self.transformer_proj.half()
            self.token_embedding.half()
        self.dtype = torch.float16

    def encode_text(self, tokens: torch.Tensor, mask: torch.Tensor | None) -> TextConditioning:
        """The text encoder on padded ``tokens`` (N x text_ctx) with their ``mask``."""
        x = self.token_embedding(tokens.long()) + self.positional_embedding[None]
        if self.config.xf_padding:
            if mask is None:
                raise ValueError("this GLIDE model pads its text input: a token mask is required")
            x = torch.where(mask[..., None], x, self.padding_embedding[None])
        x = self.transformer(x.to(self.dtype))
        if self.final_ln is not None:
            x = self.final_ln(x)
        return TextConditioning(proj=self.transformer_proj(x[:, -1]), tokens=x.permute(0, 2, 1).contiguous())

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, tokens: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, low_res: torch.Tensor | None = None,
                text: TextConditioning | None = None) -> torch.Tensor:
        """Eps and variance channels (N x 6 x H x W) for ``x`` at ``timesteps`` (the original 0..999 scale);
        the text comes as ``tokens``/``mask`` or already encoded as ``text``."""
        if self.config.super_res:
            if low_res is None:
                raise ValueError("the GLIDE upsampler needs its low_res input")
            x = torch.cat([x, F.interpolate(low_res, x.shape[2:], mode="bilinear", align_corners=False)], dim=1)
        emb = self.time_embed(timestep_embedding(timesteps, self.config.num_channels))
        text_tokens = None
        if self.config.xf_width:
            if text is None:
                if tokens is None:
                    raise ValueError("this GLIDE model is text-conditional: pass tokens (and mask) or text")
                text = self.encode_text(tokens, mask)
            emb = emb + text.proj.to(emb)
            text_tokens = text.tokens
        h = x.to(self.dtype)
        skips = []
        for stage in self.input_blocks:
            h = stage(h, emb, text_tokens)
            skips.append(h)
        h = self.middle_block(h, emb, text_tokens)
        for stage in self.output_blocks:
            h = stage(torch.cat([h, skips.pop()], dim=1), emb, text_tokens)
        return self.out(h.to(x.dtype))


class ConvResample(nn.Module):
    """Downsampling by a strided conv / upsampling by nearest x2 then a conv (when not ``resblock_updown``)."""

    def __init__(self, channels: int, up: bool) -> None:
        super().__init__()
        self.up = up
        if up:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        else:
            self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest")) if self.up else self.op(x)

