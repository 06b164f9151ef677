"""The flow-matching vector field: CosyVoice-1's 1-D U-Net with transformer blocks (Matcha-TTS style).

Input channels are concat(x, mu, speaker, cond), each `n_mels` wide. Levels: one ResNet block plus
`n_blocks` transformer blocks each, stride-2 down/up sampling between levels, `num_mid_blocks` in the
middle. Module names follow the official `ConditionalDecoder` (diffusers' attention naming inside:
`attn1.to_q`, `ff.net.0.proj`, ...) so the official `flow.pt` loads without renaming.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class EstimatorConfig:
    in_channels: int = 320  # x, mu, speaker, cond: 4 x 80
    out_channels: int = 80
    channels: tuple[int, ...] = (256, 256)
    attention_head_dim: int = 64
    n_blocks: int = 4
    num_mid_blocks: int = 12
    num_heads: int = 8
    dropout: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(self.channels))


def timestep_features(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """Sinusoidal features of flow times t [B] in 0..1 -> [B, dim] (sin half, then cos half)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * -(math.log(10000) / (half - 1)))
    angles = scale * t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class Block1D(nn.Module):
    def __init__(self, dim: int, dim_out: int, groups: int = 8):
        super().__init__()
        self.block = nn.Sequential(nn.Conv1d(dim, dim_out, 3, padding=1), nn.GroupNorm(groups, dim_out), nn.Mish())

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.block(x * mask) * mask


class ResnetBlock1D(nn.Module):
    def __init__(self, dim: int, dim_out: int, time_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Mish(), nn.Linear(time_dim, dim_out))
        self.block1 = Block1D(dim, dim_out)
        self.block2 = Block1D(dim_out, dim_out)
        self.res_conv = nn.Conv1d(dim, dim_out, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        h = self.block1(x, mask) + self.mlp(time)[:, :, None]
        return self.block2(h, mask) + self.res_conv(x * mask)


class Attention(nn.Module):
    """diffusers' `Attention` as configured here: no q/k/v bias, output projection with bias."""

    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(dropout)])

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = (proj(x).view(b, t, self.heads, -1).transpose(1, 2) for proj in (self.to_q, self.to_k, self.to_v))
        bias = None if key_mask is None else key_mask[:, None, None, :]  # bool [B, 1, 1, T]
        out = F.scaled_dot_product_attention(q, k, v, bias).transpose(1, 2).reshape(b, t, -1)
        return self.to_out[1](self.to_out[0](out))


class GELUProjection(nn.Module):
    def __init__(self, dim: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x))


class FeedForward(nn.Module):
    def __init__(self, dim: int, dropout: float, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([GELUProjection(dim, dim * mult), nn.Dropout(dropout), nn.Linear(dim * mult, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class TransformerBlock(nn.Module):
    """diffusers' `BasicTransformerBlock` with self-attention only: norm1/attn1, norm3/ff."""

    def __init__(self, dim: int, config: EstimatorConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, config.num_heads, config.attention_head_dim, config.dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, config.dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x), key_mask)
        return x + self.ff(self.norm3(x))


class Downsample1D(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample1D(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(dim, dim, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _transformers(dim: int, config: EstimatorConfig) -> nn.ModuleList:
    return nn.ModuleList(TransformerBlock(dim, config) for _ in range(config.n_blocks))


def _run_transformers(blocks: nn.ModuleList, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x [B, C, T] through the blocks as [B, T, C]; padded keys are hidden when there are any."""
    key_mask = None if bool(mask.all()) else mask[:, 0].bool()
    x = x.transpose(1, 2)
    for block in blocks:
        x = block(x, key_mask)
    return x.transpose(1, 2)


class UNetEstimator(nn.Module):
    """Predicts the flow velocity: (x, mask, mu, t, spks, cond) -> [B, out_channels, T]."""

    def __init__(self, config: EstimatorConfig):
        super().__init__()
        self.config = config
        channels = config.channels
        time_dim = channels[0] * 4
        self.time_mlp = TimestepEmbedding(config.in_channels, time_dim)
        self.down_blocks = nn.ModuleList()
        out_ch = config.in_channels
        for i, width in enumerate(channels):
            in_ch, out_ch = out_ch, width
            last = i == len(channels) - 1
            down = nn.Conv1d(out_ch, out_ch, 3, padding=1) if last else Downsample1D(out_ch)
            self.down_blocks.append(
                nn.ModuleList([ResnetBlock1D(in_ch, out_ch, time_dim), _transformers(out_ch, config), down])
            )
        self.mid_blocks = nn.ModuleList(
            nn.ModuleList([ResnetBlock1D(channels[-1], channels[-1], time_dim), _transformers(channels[-1], config)])
            for _ in range(config.num_mid_blocks)
        )
        self.up_blocks = nn.ModuleList()
        up_widths = channels[::-1] + (channels[0],)
        for i in range(len(up_widths) - 1):
            in_ch, out_ch = up_widths[i] * 2, up_widths[i + 1]
            last = i == len(up_widths) - 2
            up = nn.Conv1d(out_ch, out_ch, 3, padding=1) if last else Upsample1D(out_ch)
            self.up_blocks.append(
                nn.ModuleList([ResnetBlock1D(in_ch, out_ch, time_dim), _transformers(out_ch, config), up])
            )
        self.final_block = Block1D(up_widths[-1], up_widths[-1])
        self.final_proj = nn.Conv1d(up_widths[-1], config.out_channels, 1)
        self._initialize()

    def _initialize(self):
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(
        self,
        x: torch.Tensor,  # [B, 80, T] noisy mel
        mask: torch.Tensor,  # [B, 1, T] 1 = real frame
        mu: torch.Tensor,  # [B, 80, T] regulated encoder output
        t: torch.Tensor,  # [B] flow time
        spks: torch.Tensor,  # [B, 80] projected speaker embedding
        cond: torch.Tensor,  # [B, 80, T] prompt mel, zeros elsewhere
    ) -> torch.Tensor:
        time = self.time_mlp(timestep_features(t, self.config.in_channels).to(x.dtype))
        x = torch.cat([x, mu, spks[:, :, None].expand(-1, -1, x.shape[-1]), cond], dim=1)
        skips, masks = [], [mask]
        for resnet, transformers, down in self.down_blocks:
            level_mask = masks[-1]
            x = _run_transformers(transformers, resnet(x, level_mask, time), level_mask)
            skips.append(x)
            x = down(x * level_mask)
            masks.append(level_mask[:, :, ::2])
        masks.pop()
        for resnet, transformers in self.mid_blocks:
            x = _run_transformers(transformers, resnet(x, masks[-1], time), masks[-1])
        for resnet, transformers, up in self.up_blocks:
            level_mask, skip = masks.pop(), skips.pop()
            x = torch.cat([x[:, :, : skip.shape[-1]], skip], dim=1)
            x = _run_transformers(transformers, resnet(x, level_mask, time), level_mask)
            x = up(x * level_mask)
        x = self.final_block(x, level_mask)
        return self.final_proj(x * level_mask) * mask
