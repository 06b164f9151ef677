"""The streaming SAN-M encoder of FunASR's Paraformer-large online model (SANMEncoderChunkOpt).

Each block is pre-norm self-attention whose output is added to an FSMN memory (a depthwise 1-D conv
of kernel 11 over the values, plus the values), then a ReLU feed-forward. The first block maps the
560-dim LFR features to d=512 and has no attention residual. Inputs are scaled by sqrt(d) and get
sinusoidal positions counted from 1 over the whole stream.

Step-Audio runs it only in chunked streaming mode, chunk_size (0, 4, 5) with encoder look-back 4,
even offline. Per call, the new LFR frames are appended to the previous 5 (embedded) frames and the
whole window goes through every block: queries are the window, keys/values are the window plus up to
16 cached earlier frames per block, and the FSMN sees only the window (zero padded). The frames that
leave the window become that block's cached keys/values. The call's output is the last
len(new frames) rows after the final LayerNorm. Parameter names follow FunASR's, so the encoder
part of a Paraformer `model.pt` loads as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

CHUNK_SIZE = (0, 4, 5)  # (left pad, frames per chunk, look-ahead frames) as the official tokenizer sets them
ENCODER_LOOK_BACK = 4  # chunks of cached keys/values per block
LAYER_NORM_EPS = 1e-12  # FunASR's LayerNorm


@dataclass(frozen=True)
class SanmConfig:
    """The `encoder_conf` fields that shape the weights (FunASR names in comments)."""

    input_size: int = 560  # n_mels * lfr_m
    output_size: int = 512
    attention_heads: int = 4
    linear_units: int = 2048
    num_blocks: int = 50
    kernel_size: int = 11
    sanm_shift: int = 0  # sanm_shfit


class SanmAttention(nn.Module):
    """Multi-head self-attention plus FSMN memory, over a window with cached keys/values in front."""

    def __init__(self, in_size: int, size: int, heads: int, kernel_size: int, shift: int):
        super().__init__()
        self.heads = heads
        self.head_dim = size // heads
        self.linear_q_k_v = nn.Linear(in_size, 3 * size)
        self.linear_out = nn.Linear(size, size)
        self.fsmn_block = nn.Conv1d(size, size, kernel_size, groups=size, bias=False)
        left = (kernel_size - 1) // 2 + shift
        self.fsmn_padding = (left, kernel_size - 1 - left)

    def forward(
        self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None, keep: int, history: int
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x [B, T, in] -> [B, T, size]; `keep` leading frames of the window join the cache (at most `history`)."""
        batch, frames, _ = x.shape
        q, k, v = self.linear_q_k_v(x).chunk(3, dim=-1)  # [B, T, size] each
        memory = self.fsmn_block(nn.functional.pad(v.transpose(1, 2), self.fsmn_padding)).transpose(1, 2) + v
        q, k, v = (t.reshape(batch, frames, self.heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        if cache is None:
            new_cache = (k[:, :, :keep], v[:, :, :keep])
        else:
            new_cache = (
                torch.cat([cache[0], k[:, :, :keep]], dim=2)[:, :, -history:],
                torch.cat([cache[1], v[:, :, :keep]], dim=2)[:, :, -history:],
            )
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        scores = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)  # [B, H, T, cached + T]
        attended = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, frames, -1)
        return self.linear_out(attended) + memory, new_cache


class FeedForward(nn.Module):
    def __init__(self, size: int, hidden: int):
        super().__init__()
        self.w_1 = nn.Linear(size, hidden)
        self.w_2 = nn.Linear(hidden, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(torch.relu(self.w_1(x)))


class SanmBlock(nn.Module):
    def __init__(self, in_size: int, config: SanmConfig):
        super().__init__()
        size = config.output_size
        self.norm1 = nn.LayerNorm(in_size, eps=LAYER_NORM_EPS)
        self.self_attn = SanmAttention(in_size, size, config.attention_heads, config.kernel_size, config.sanm_shift)
        self.norm2 = nn.LayerNorm(size, eps=LAYER_NORM_EPS)
        self.feed_forward = FeedForward(size, config.linear_units)
        self.residual = in_size == size

    def forward(self, x, cache, keep: int, history: int):
        attended, cache = self.self_attn(self.norm1(x), cache, keep, history)
        x = x + attended if self.residual else attended
        return x + self.feed_forward(self.norm2(x)), cache


def sinusoidal_positions(start: int, count: int, dim: int) -> torch.Tensor:
    """FunASR's positions start+1..start+count: [count, dim] = sin | cos with timescales up to 10^4."""
    positions = torch.arange(start + 1, start + count + 1, dtype=torch.float32)[:, None]
    log_increment = torch.tensor(10000.0).log() / (dim / 2 - 1)  # in float32, as FunASR computes it
    inv_timescales = torch.exp(torch.arange(dim // 2, dtype=torch.float32) * -log_increment)
    scaled = positions * inv_timescales
    return torch.cat([scaled.sin(), scaled.cos()], dim=1)


@dataclass
class EncoderState:
    """One stream's carried state: frames seen, the last window frames and each block's cached keys/values."""

    position: int = 0
    overlap: torch.Tensor | None = None  # [B, 5, input_size] embedded frames; zeros before the first call
    caches: list = field(default_factory=list)  # per block: (keys, values) [B, H, <=16, head_dim] or None


class SanmEncoder(nn.Module):
    """FunASR's SANMEncoderChunkOpt, run chunk by chunk as Step-Audio runs it."""

    def __init__(
        self, config: SanmConfig, chunk_size: tuple[int, int, int] = CHUNK_SIZE, look_back: int = ENCODER_LOOK_BACK
    ):
        super().__init__()
        self.config = config
        self.chunk_size = chunk_size
        self.look_back = look_back
        self.encoders0 = nn.ModuleList([SanmBlock(config.input_size, config)])
        self.encoders = nn.ModuleList([SanmBlock(config.output_size, config) for _ in range(config.num_blocks - 1)])
        self.after_norm = nn.LayerNorm(config.output_size, eps=LAYER_NORM_EPS)

    def new_state(self, batch: int = 1) -> EncoderState:
        overlap = torch.zeros(batch, self.chunk_size[0] + self.chunk_size[2], self.config.input_size)
        return EncoderState(overlap=overlap, caches=[None] * (len(self.encoders0) + len(self.encoders)))

    @torch.inference_mode()
    def forward_chunk(self, feats: torch.Tensor, state: EncoderState) -> torch.Tensor:
        """New LFR frames [B, T, input_size] -> their encodings [B, T, output_size]; updates `state`."""
        frames = feats.shape[1]
        x = feats * self.config.output_size**0.5 + sinusoidal_positions(state.position, frames, feats.shape[2])
        state.position += frames
        window = torch.cat([state.overlap, x], dim=1)  # [B, 5 + T, input_size]
        state.overlap = window[:, -state.overlap.shape[1] :]
        keep = window.shape[1] - self.chunk_size[2]  # the frames before the look-ahead join the cache
        history = self.look_back * self.chunk_size[1]
        for index, block in enumerate([*self.encoders0, *self.encoders]):
            window, state.caches[index] = block(window, state.caches[index], keep, history)
        return self.after_norm(window)[:, -frames:]
