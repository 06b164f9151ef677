"""The decoder-only language model of Step-Audio, all of it in this file, read from top to bottom.

One implementation serves two families that differ only in how attention sees position:
- Step1 (Step-Audio-Chat, Step-Audio-TTS-3B): no position embedding; each head adds the bias
  -slope * sqrt(i - j) to its scores ("square-root ALiBi", standard ALiBi slopes);
- Llama (SmolLM2, the `mini` chat model): rotary embeddings (RoPE, Hugging Face half-split layout).
Everything else is shared: pre-norm RMSNorm, grouped-query attention, SwiGLU, no biases.

The forward pass always runs against a `KVCache` (stepaudio.lm.cache): prefill, decode, turn
appends and speculative verification are all "append these tokens to the cache and return logits".
q/k/v and gate/up are fused into one matrix each, so a decode step is 4 matrix products per layer.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from stepaudio.errors import CheckpointError
from stepaudio.lm.cache import KVCache

Position = Literal["rope", "sqrt_alibi"]


@dataclass(frozen=True)
class LMConfig:
    """Architecture of one model; saved as JSON beside its safetensors weights."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    position: Position = "rope"
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    max_seq_len: int = 4096

    def __post_init__(self):
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise CheckpointError(
                f"inconsistent attention shape: hidden {self.hidden_size}, {self.num_heads} heads, "
                f"{self.num_kv_heads} kv heads (heads must divide hidden, kv heads must divide heads)"
            )
        if self.position not in ("rope", "sqrt_alibi"):
            raise CheckpointError(f"unknown position scheme {self.position!r} (rope or sqrt_alibi)")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> LMConfig:
        return cls(**json.loads(Path(path).read_text()))


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """The ALiBi slope of each head: 2^(-8k/n) for k = 1..n with n the largest power of two <= heads;
    the remaining heads take every other slope of the 2n-head schedule (2^(-4(2k-1)/n))."""
    n = 2 ** math.floor(math.log2(num_heads))
    slopes = [2.0 ** (-8.0 * k / n) for k in range(1, n + 1)]
    slopes += [2.0 ** (-4.0 * (2 * k - 1) / n) for k in range(1, num_heads - n + 1)]
    return torch.tensor(slopes, dtype=torch.float32)


def sqrt_alibi_bias(slopes: torch.Tensor, query_pos: torch.Tensor, key_pos: torch.Tensor) -> torch.Tensor:
    """Additive attention bias -slope * sqrt(i - j) for keys at or before the query, -inf after.
    slopes [H], query_pos [T], key_pos [S] -> [H, T, S] float32."""
    distance = (query_pos[:, None] - key_pos[None, :]).float()  # [T, S]
    bias = -slopes[:, None, None] * distance.clamp(min=0).sqrt()
    return bias.masked_fill(distance < 0, float("-inf"))


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


class Rotary(nn.Module):
    """RoPE tables for every position up to max_seq_len; rotates the two halves of each head."""

    def __init__(self, head_dim: int, theta: float, max_seq_len: int):
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)  # [S, D/2]
        angles = torch.cat([angles, angles], dim=-1)  # [S, D]
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x [B, H, T, D], positions [T]."""
        cos, sin = self.cos[positions].to(x.dtype), self.sin[positions].to(x.dtype)  # [T, D]
        first, second = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-second, first], dim=-1) * sin


class Attention(nn.Module):
    def __init__(self, config: LMConfig):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = config.num_heads, config.num_kv_heads, config.head_dim
        self.qkv = nn.Linear(
            config.hidden_size, (config.num_heads + 2 * config.num_kv_heads) * self.head_dim, bias=False
        )
        self.out = nn.Linear(config.num_heads * self.head_dim, config.hidden_size, bias=False)

    def project(
        self, x: torch.Tensor, start: int, rotary: Rotary | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, T, hidden] at positions start.. -> q [B, H, T, D], k and v [B, Hkv, T, D] (RoPE applied)."""
        batch, steps, _ = x.shape
        q, k, v = self.qkv(x).split(
            [self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim, self.num_kv_heads * self.head_dim], -1
        )
        q = q.view(batch, steps, self.num_heads, self.head_dim).transpose(1, 2)
        k = k.view(batch, steps, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(batch, steps, self.num_kv_heads, self.head_dim).transpose(1, 2)
        if rotary is not None:
            positions = torch.arange(start, start + steps, device=x.device)
            q, k = rotary(q, positions), rotary(k, positions)
        return q, k, v

    def forward(
        self,
        x: torch.Tensor,  # [B, T, hidden]
        layer: int,
        cache: KVCache | None,  # None: the tokens are the whole sequence (training)
        start: int,
        rotary: Rotary | None,
        mask: torch.Tensor | None,  # [B or 1, H or 1, T, start + T], additive or boolean
    ) -> torch.Tensor:
        batch, steps, _ = x.shape
        q, k, v = self.project(x, start, rotary)
        keys, values = cache.write(layer, start, k, v) if cache is not None else (k, v)  # [B, Hkv, start + T, D]
        # Query head h reads kv head h // (H / Hkv), as in the official and HF checkpoints.
        y = F.scaled_dot_product_attention(
            q, keys, values, attn_mask=mask, is_causal=mask is None and steps > 1, enable_gqa=True
        )
        return self.out(y.transpose(1, 2).reshape(batch, steps, -1))


class SwiGLU(nn.Module):
    def __init__(self, config: LMConfig):
        super().__init__()
        self.gate_up = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, config: LMConfig):
        super().__init__()
        self.attn_norm = RMSNorm(config.hidden_size, config.norm_eps)
        self.attn = Attention(config)
        self.mlp_norm = RMSNorm(config.hidden_size, config.norm_eps)
        self.mlp = SwiGLU(config)

    def forward(self, x, layer, cache, start, rotary, mask):
        x = x + self.attn(self.attn_norm(x), layer, cache, start, rotary, mask)
        return x + self.mlp(self.mlp_norm(x))


class Transformer(nn.Module):
    def __init__(self, config: LMConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self._init_position()

    def _init_position(self) -> None:
        """The RoPE tables or ALiBi slopes: computed, never stored in checkpoints."""
        c, device = self.config, self.embed.weight.device
        if c.position == "rope":
            self.rotary = Rotary(c.head_dim, c.rope_theta, c.max_seq_len).to(device)
        else:
            self.rotary = None
            self.register_buffer("slopes", alibi_slopes(c.num_heads).to(device), persistent=False)

    @classmethod
    def from_state_dict(cls, config: LMConfig, state: dict[str, torch.Tensor], dtype: torch.dtype) -> Transformer:
        """Build without initialising random weights (on `meta`), then take the given tensors."""
        with torch.device("meta"):
            model = cls(config)
        state = {name: tensor.to(dtype) for name, tensor in state.items()}
        if config.tie_embeddings:
            state["lm_head.weight"] = state["embed.weight"]
        try:
            model.load_state_dict(state, strict=True, assign=True)
        except RuntimeError as error:
            raise CheckpointError(f"weights do not fit the model configuration: {error}") from error
        if config.tie_embeddings:
            model.lm_head.weight = model.embed.weight
        model._init_position()
        return model.eval()

    @property
    def dtype(self) -> torch.dtype:
        return self.embed.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    def new_cache(self, batch_size: int = 1, max_len: int | None = None) -> KVCache:
        """A preallocated cache for `batch_size` rows of up to `max_len` tokens (default: the model's)."""
        c = self.config
        max_len = min(max_len or c.max_seq_len, c.max_seq_len)
        return KVCache(c.num_layers, batch_size, c.num_kv_heads, max_len, c.head_dim, self.dtype, self.device)

    def truncated(self, num_layers: int) -> Transformer:
        """A model made of the first `num_layers` blocks and the same head, sharing weights (a cheap
        draft model for speculative decoding when no smaller pretrained sibling exists)."""
        if not 0 < num_layers <= self.config.num_layers:
            raise ValueError(f"num_layers must be in 1..{self.config.num_layers}, got {num_layers}")
        draft = Transformer.__new__(Transformer)
        nn.Module.__init__(draft)
        draft.config = LMConfig(**{**asdict(self.config), "num_layers": num_layers})
        draft.embed, draft.norm, draft.lm_head, draft.rotary = self.embed, self.norm, self.lm_head, self.rotary
        draft.layers = nn.ModuleList(self.layers[:num_layers])
        if self.rotary is None:
            draft.register_buffer("slopes", self.slopes, persistent=False)
        return draft

    def _mask(self, cache: KVCache, start: int, steps: int) -> torch.Tensor | None:
        """What each new query may see: causal, never a padding slot, plus the sqrt-ALiBi bias.
        None when plain causal attention is exact (lets SDPA take its fastest path)."""
        end = start + steps
        padded = cache.has_padding
        if self.rotary is not None and not padded and (start == 0 or steps == 1):
            return None
        query_pos = torch.arange(start, end, device=self.device)
        key_pos = torch.arange(end, device=self.device)
        if self.rotary is None:
            mask = sqrt_alibi_bias(self.slopes, query_pos, key_pos)[None]  # [1, H, T, S]
        else:
            mask = torch.zeros(1, 1, steps, end, device=self.device).masked_fill(
                key_pos[None, :] > query_pos[:, None], float("-inf")
            )
        if padded:
            # A padding slot is visible to nobody but itself (so its own row stays finite).
            hidden = ~cache.valid[:, None, None, :end] & (key_pos[None, :] != query_pos[:, None])  # [B, 1, T, S]
            mask = mask.masked_fill(hidden, float("-inf"))
        return mask.to(self.dtype)

    def hidden_states(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final-norm hidden states [B, T, hidden] of whole sequences, without a cache: for training,
        where the loss needs the head at a few positions only. Right padding needs no mask."""
        steps = tokens.shape[1]
        positions = torch.arange(steps, device=self.device)
        mask = None if self.rotary is not None else sqrt_alibi_bias(self.slopes, positions, positions)[None]
        x = self.embed(tokens)
        for index, block in enumerate(self.layers):
            x = block(x, index, None, 0, self.rotary, None if mask is None else mask.to(x.dtype))
        return self.norm(x)

    def forward(self, tokens: torch.Tensor, cache: KVCache, all_logits: bool = False) -> torch.Tensor:
        """Append tokens [B, T] to the cache and return float32 logits [B, T, V] (all_logits) or
        [B, V] for the last position only (saves the vocabulary projection during prefill)."""
        batch, steps = tokens.shape
        start = cache.length
        if batch != cache.batch_size:
            raise ValueError(f"cache holds {cache.batch_size} rows, got tokens for {batch}")
        if start + steps > cache.max_len:
            raise ValueError(f"{start} cached + {steps} new tokens exceed the cache length {cache.max_len}")
        mask = self._mask(cache, start, steps)
        x = self.embed(tokens)
        for index, block in enumerate(self.layers):
            x = block(x, index, cache, start, self.rotary, mask)
        cache.length = start + steps
        x = self.norm(x if all_logits else x[:, -1])
        return self.lm_head(x).float()
