"""Guided attention for the TTS LM: a few heads are pulled toward the diagonal from speech to its text.

A small decoder-only TTS model trained on a few hours of speech first learns to continue speech from
speech alone and may take very long to start reading the text (`bench/tts_text_use.py` measures it;
the mini model's figures with and without the guide: docs/experiments.md). The guide of DC-TTS
(Tachibana et al., 2017) speeds this up: the attention of speech token n of N onto text token t of T
should lie near t/T = n/N, so some heads get a loss on the attention mass they put outside that band.
Only training uses it; the model and its inference are unchanged.

That even pace is a guess: the band must be a fifth of the text wide to hold the word being spoken.
Where a span knows which text position each speech token reads (word timings, `stepaudio data align`),
its band follows them and is a word wide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from stepaudio.lm.model import Attention, Transformer

READING_WIDTH = 1.5  # text tokens: Whisper's word times are good to about a third of a word


class Span(NamedTuple):
    """Positions of one transcript and its speech in a sequence."""

    text_start: int
    text_end: int
    speech_start: int
    speech_end: int
    # [speech_end - speech_start] text position (in tokens from text_start) each speech token reads;
    # None: an even pace
    reading: torch.Tensor | None = None


def band(positions: torch.Tensor, text_len: int, width: float) -> torch.Tensor:
    """[len(positions), text_len] Gaussian weights, 1 where a text token's middle is the position read."""
    t = torch.arange(text_len) + 0.5
    return torch.exp(-((positions[:, None] - t[None, :]) ** 2) / (2 * width**2))


def even_pace(speech_len: int, text_len: int) -> torch.Tensor:
    """[speech_len] the text position each speech token would read at an even pace: t/T = n/N."""
    return (torch.arange(speech_len) + 0.5) / speech_len * text_len


def diagonal_band(speech_len: int, text_len: int, width: float = 0.2) -> torch.Tensor:
    """The band of an even pace, falling off with `width` (a fraction of the text)."""
    return band(even_pace(speech_len, text_len), text_len, width * text_len)


def span_band(span: Span, width: float) -> torch.Tensor:
    """[speech, text] band of a span: where it reads, or an even pace `width` of the text wide."""
    text_len, speech_len = span.text_end - span.text_start, span.speech_end - span.speech_start
    if span.reading is None:
        return diagonal_band(speech_len, text_len, width)
    return band(span.reading, text_len, READING_WIDTH)


def guide_loss(probs: torch.Tensor, spans: Sequence[Sequence[Span]], width: float = 0.2) -> torch.Tensor:
    """1 - the attention mass inside the band, averaged over the heads and speech tokens of each span,
    then over the spans. probs [B, heads, T, S]: attention of query positions onto key positions; spans:
    per row. One weighted sum over the whole batch (slicing per span made backward fill a zero
    gradient of the full size for every span)."""
    weights = probs.new_zeros(probs.shape[0], probs.shape[2], probs.shape[3])  # on the GPU when training there
    count = sum(len(row_spans) for row_spans in spans)
    for row, row_spans in enumerate(spans):
        for span in row_spans:
            speech, text = slice(span.speech_start, span.speech_end), slice(span.text_start, span.text_end)
            weights[row, speech, text] = span_band(span, width).to(weights) / (count * (speech.stop - speech.start))
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
