"""Guided attention for the TTS LM: a few heads are pulled toward the diagonal from speech to its text.

A small decoder-only TTS model trained on a few hours of speech first learns to continue speech from
speech alone and may take very long to start reading the text (`bench/tts_text_use.py` on the mini
model after 1900 steps: loss 3.15 on a target's speech with its transcript, 3.18 with another one).
The guide of DC-TTS (Tachibana et al., 2017) speeds this up: the attention of speech token n of N onto
text token t of T should lie near t/T = n/N, so some heads get a loss on the attention mass they put
outside that band (1900 steps later, with the guide: 2.50 against 2.67). Only training uses it; the
model and its inference are unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from stepaudio.lm.model import Attention, Transformer

# (text_start, text_end, speech_start, speech_end) positions of one transcript and its speech
Span = tuple[int, int, int, int]


def diagonal_band(speech_len: int, text_len: int, width: float = 0.2) -> torch.Tensor:
    """[speech_len, text_len] Gaussian weights, 1 where t/T = n/N, falling off with `width`."""
    n = (torch.arange(speech_len) + 0.5) / speech_len
    t = (torch.arange(text_len) + 0.5) / text_len
    return torch.exp(-((n[:, None] - t[None, :]) ** 2) / (2 * width**2))


def guide_loss(probs: torch.Tensor, spans: Sequence[Sequence[Span]], width: float = 0.2) -> torch.Tensor:
    """1 - the attention mass inside the band, averaged over the heads and speech tokens of each span,
    then over the spans. probs [B, heads, T, S]: attention of query positions onto key positions; spans:
    per row. One weighted sum over the whole batch (slicing per span made backward fill a zero
    gradient of the full size for every span)."""
    weights = probs.new_zeros(probs.shape[0], probs.shape[2], probs.shape[3])  # on the GPU when training there
    count = sum(len(row_spans) for row_spans in spans)
    for row, row_spans in enumerate(spans):
        for text_start, text_end, speech_start, speech_end in row_spans:
            band = diagonal_band(speech_end - speech_start, text_end - text_start, width).to(weights)
            weights[row, speech_start:speech_end, text_start:text_end] = band / (count * (speech_end - speech_start))
    return 1 - (probs * weights[:, None]).sum() / probs.shape[1]


class AttentionGuide:
    """Records the attention probabilities of the guided heads when the model runs: the middle layer,
    its heads with the weakest ALiBi slopes (the second half), which can see the whole text."""

    def __init__(self, model: Transformer):
        config = model.config
        self.heads = list(range(config.num_heads // 2, config.num_heads))
        self.kv_heads = [head * config.num_kv_heads // config.num_heads for head in self.heads]
        self.probs: torch.Tensor | None = None
        model.layers[config.num_layers // 2].attn.register_forward_hook(self._record)

    def _record(self, attention: Attention, args: tuple, output: torch.Tensor) -> None:
        x, _, _, start, rotary, mask = args  # Attention.forward(x, layer, cache, start, rotary, mask)
        q, k, _ = attention.project(x, start, rotary)
        q, k = q[:, self.heads], k[:, self.kv_heads]
        scores = q @ k.transpose(-1, -2) / math.sqrt(attention.head_dim)
        if mask is None:  # RoPE: plain causal attention (Transformer.hidden_states)
            future = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=x.device).triu(1)
            self.probs = scores.masked_fill(future, float("-inf")).softmax(-1)
        else:  # sqrt-ALiBi: the causal bias of every head [1, H, T, T]
            self.probs = (scores + mask[:, self.heads]).softmax(-1)

    def loss(self, spans: Sequence[Sequence[Span]]) -> torch.Tensor:
        return guide_loss(self.probs, spans)
