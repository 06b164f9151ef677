"""Tokens replaced by random ones of the same range, at a rate drawn per example, so that a model cannot
lean on them alone: training against a shortcut (the flow's on the acoustic stream, the TTS LM's on the
speech it has already said)."""

from __future__ import annotations

import torch


def replace_at_random(tokens: torch.Tensor, low: int, high: int, max_rate: float) -> torch.Tensor:
    """tokens [B, T]: those in [low, high) replaced by random ones of [low, high), in each row at a rate
    drawn from [0, max_rate]; the others are never touched."""
    rates = torch.rand(tokens.shape[0], 1, device=tokens.device) * max_rate
    in_range = (tokens >= low) & (tokens < high)
    replaced = in_range & (torch.rand(tokens.shape, device=tokens.device) < rates)
    return torch.where(replaced, torch.randint_like(tokens, low, high), tokens)
