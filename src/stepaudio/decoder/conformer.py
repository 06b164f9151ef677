"""The flow model's token encoder: CosyVoice-1's "Conformer" with ESPnet relative positions.

As configured in every CosyVoice-1 flow (use_cnn_module and macaron_style off), a block is
pre-norm self-attention with Transformer-XL relative positions followed by a SiLU feed-forward.
Parameter names follow the official wenet-style modules, so `flow.pt` loads as is:
`embed.out.{0,1}`, `encoders.N.{self_attn,feed_forward,norm_mha,norm_ff}`, `after_norm`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class EncoderConfig:
    input_size: int = 512
    output_size: int = 512
    attention_heads: int = 8
    linear_units: int = 2048
    num_blocks: int = 6
    dropout_rate: float = 0.1
    positional_dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1


def relative_positions(length: int, dim: int) -> torch.Tensor:
    """ESPnet's relative sinusoids for offsets T-1 .. -(T-1): [2T-1, dim], sin/cos interleaved."""
    offsets = torch.arange(length - 1, -length, -1, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
    table = torch.zeros(2 * length - 1, dim)
    table[:, 0::2] = torch.sin(offsets * inv_freq)
    table[:, 1::2] = torch.cos(offsets * inv_freq)
    return table


class LinearInput(nn.Module):
    """Linear + LayerNorm input layer; scales by sqrt(d) and returns the relative position table."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.out = nn.Sequential(
            nn.Linear(config.input_size, config.output_size),
            nn.LayerNorm(config.output_size, eps=1e-5),
            nn.Dropout(config.dropout_rate),
        )
        self.dropout = nn.Dropout(config.positional_dropout_rate)
        self.scale = math.sqrt(config.output_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.out(x) * self.scale  # [B, T, D]
        pos = relative_positions(x.shape[1], x.shape[2]).to(x)[None]  # [1, 2T-1, D]
        return self.dropout(x), self.dropout(pos)


class RelPositionAttention(nn.Module):
    """Multi-head attention with Transformer-XL biases u, v and a learned projection of positions."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        dim, heads = config.output_size, config.attention_heads
        if dim % heads:
            raise ValueError(f"encoder width {dim} is not a multiple of {heads} heads")
        self.heads, self.head_dim = heads, dim // heads
        self.linear_q = nn.Linear(dim, dim)
        self.linear_k = nn.Linear(dim, dim)
        self.linear_v = nn.Linear(dim, dim)
        self.linear_out = nn.Linear(dim, dim)
        self.linear_pos = nn.Linear(dim, dim, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(heads, self.head_dim))
        self.pos_bias_v = nn.Parameter(torch.empty(heads, self.head_dim))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)
        self.dropout_p = config.attention_dropout_rate

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim)  # [B, T, H, dk]

    def forward(self, x: torch.Tensor, pos: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """x [B, T, D], pos [1, 2T-1, D], key_mask [B, T] bool (True = real frame) or None."""
        length = x.shape[1]
        q, k, v = self._split(self.linear_q(x)), self._split(self.linear_k(x)), self._split(self.linear_v(x))
        p = self._split(self.linear_pos(pos))  # [1, 2T-1, H, dk]
        q_u = (q + self.pos_bias_u).transpose(1, 2)  # [B, H, T, dk]
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        position_scores = q_v @ p.permute(0, 2, 3, 1)  # [B, H, T, 2T-1]
        # Query i and key j are (i - j) apart, found at index (T-1) - i + j of the table.
        offsets = torch.arange(length, device=x.device)
        index = (length - 1) - offsets[:, None] + offsets[None, :]
        position_scores = position_scores.gather(-1, index.expand(*position_scores.shape[:2], -1, -1))
        bias = position_scores / math.sqrt(self.head_dim)
        if key_mask is not None:
            bias = bias.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        dropout = self.dropout_p if self.training else 0.0
        out = F.scaled_dot_product_attention(q_u, k.transpose(1, 2), v.transpose(1, 2), bias, dropout)
        return self.linear_out(out.transpose(1, 2).reshape(x.shape))


class FeedForward(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.w_1 = nn.Linear(config.output_size, config.linear_units)
        self.w_2 = nn.Linear(config.linear_units, config.output_size)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(self.dropout(F.silu(self.w_1(x))))


class EncoderLayer(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.self_attn = RelPositionAttention(config)
        self.feed_forward = FeedForward(config)
        self.norm_mha = nn.LayerNorm(config.output_size, eps=1e-5)
        self.norm_ff = nn.LayerNorm(config.output_size, eps=1e-5)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.dropout(self.self_attn(self.norm_mha(x), pos, key_mask))
        return x + self.dropout(self.feed_forward(self.norm_ff(x)))


class ConformerEncoder(nn.Module):
    """[B, T, input_size] embeddings (+ lengths) -> [B, T, output_size]; full context, no subsampling."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.embed = LinearInput(config)
        self.encoders = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_blocks))
        self.after_norm = nn.LayerNorm(config.output_size, eps=1e-5)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        key_mask = None
        if lengths is not None and bool((lengths < x.shape[1]).any()):
            key_mask = torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]  # [B, T]
        x, pos = self.embed(x)
        for layer in self.encoders:
            x = layer(x, pos, key_mask)
        return self.after_norm(x)
