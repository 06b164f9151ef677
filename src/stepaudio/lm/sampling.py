"""Choosing the next token: greedy, temperature, top-k, top-p, and the official repetition-aware rule.

`next_token_probs` turns logits into the distribution actually sampled from (speculative decoding
needs it explicitly); `choose` draws from it. Order as in transformers: repetition ban, temperature,
top-k, top-p.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from stepaudio.errors import OptionError


@dataclass(frozen=True)
class Sampling:
    """How to generate. temperature 0 means greedy (argmax)."""

    temperature: float = 0.0
    top_k: int = 0  # 0: no limit
    top_p: float = 1.0
    max_new_tokens: int = 256
    min_new_tokens: int = 0  # the stop ids cannot be chosen before this many new tokens
    stop_ids: tuple[int, ...] = ()
    seed: int | None = None
    repetition_window: int = 0  # official rule: 10 (0 turns it off)
    repetition_limit: int = 2  # a token seen this often in the window is banned next step
    repetition_penalty: float = 1.0  # > 1: tokens already in the context are less likely (see penalize_repeats)

    def __post_init__(self):
        if (
            self.temperature < 0
            or self.top_k < 0
            or not 0 < self.top_p <= 1
            or self.max_new_tokens < 0
            or self.min_new_tokens < 0
            or self.repetition_penalty <= 0
        ):
            raise OptionError(
                f"bad sampling settings: temperature {self.temperature} (>= 0), top_k {self.top_k} (>= 0), "
                f"top_p {self.top_p} (in (0, 1]), max_new_tokens {self.max_new_tokens} (>= 0), "
                f"min_new_tokens {self.min_new_tokens} (>= 0), "
                f"repetition_penalty {self.repetition_penalty} (> 0)"
            )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def reads_history(self) -> bool:
        """Whether choosing a token looks at the tokens before it."""
        return self.repetition_window > 0 or self.repetition_penalty != 1.0

    @classmethod
    def official_chat(cls, **overrides) -> Sampling:
        """Step-Audio-Chat in the release: temperature 0.7, top-p 0.9, up to 2048 new tokens."""
        return cls(**{"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 2048, **overrides})

    @classmethod
    def official_tts(cls, **overrides) -> Sampling:
        """Step-Audio-TTS-3B in the release: temperature 0.7, transformers' default top-k 50, and
        the repetition-aware rule over the last 10 tokens."""
        return cls(**{"temperature": 0.7, "top_k": 50, "max_new_tokens": 8192, "repetition_window": 10, **overrides})


def ban_repeats(logits: torch.Tensor, history: torch.Tensor, window: int, limit: int) -> torch.Tensor:
    """The official repetition-aware rule: when the last token appears `limit` times or more
    among the last `window` tokens (itself included), it may not come next.
    logits [B, V], history [B, L] (prompt included, as in the release); no-op until L >= window."""
    if window <= 0 or history.shape[1] < window:
        return logits
    recent = history[:, -window:].to(logits.device)
    last = recent[:, -1:]
    banned = (recent == last).sum(dim=1) >= limit  # [B]
    if banned.any():
        logits = logits.clone()
        rows = banned.nonzero().squeeze(1)
        logits[rows, last[rows, 0]] = float("-inf")
    return logits


def penalize_repeats(logits: torch.Tensor, history: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty, as in HF transformers and llama.cpp: the logit of every token already
    in the history [B, L] (prompt included; negative ids are padding) is divided by `penalty` when
    positive and multiplied by it when negative. A small chat model otherwise repeats its previous
    answer to a follow-up question."""
    if penalty == 1.0:
        return logits
    counts = torch.zeros_like(logits).scatter_add_(1, history.clamp(min=0), (history >= 0).to(logits.dtype))
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(counts > 0, penalized, logits)


def shape_logits(logits: torch.Tensor, sampling: Sampling, history: torch.Tensor | None) -> torch.Tensor:
    """The history-dependent rules, before greedy choice or sampling."""
    if history is None:
        return logits
    logits = penalize_repeats(logits, history.to(logits.device), sampling.repetition_penalty)
    return ban_repeats(logits, history, sampling.repetition_window, sampling.repetition_limit)


def next_token_probs(logits: torch.Tensor, sampling: Sampling, history: torch.Tensor | None = None) -> torch.Tensor:
    """The distribution [B, V] sampled from; one-hot at the argmax when greedy."""
    logits = shape_logits(logits, sampling, history)
    if sampling.greedy:
        return torch.zeros_like(logits).scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
    logits = logits / sampling.temperature
    if sampling.top_k and sampling.top_k < logits.shape[-1]:
        kth = logits.topk(sampling.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the tokens before it already reach top_p (the best one always stays).
        drop = (cumulative - sorted_logits.softmax(-1)) >= sampling.top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits.softmax(-1)


def choose(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row [B] from probs [B, V]."""
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def sample(
    logits: torch.Tensor,
    sampling: Sampling,
    history: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The next token [B] for logits [B, V]."""
    if sampling.greedy:
        return shape_logits(logits, sampling, history).argmax(-1)
    return choose(next_token_probs(logits, sampling, history), generator)
