"""Tiny random models for the language-model tests, and the installed SmolLM2 for the slow ones."""

import functools

import pytest
import torch

from stepaudio.lm.model import LMConfig, Transformer


def tiny_config(**overrides) -> LMConfig:
    fields = dict(
        vocab_size=96,
        hidden_size=48,
        intermediate_size=80,
        num_layers=2,
        num_heads=6,
        num_kv_heads=2,
        position="rope",
        rope_theta=10000.0,
        norm_eps=1e-5,
        max_seq_len=128,
    )
    return LMConfig(**(fields | overrides))


def tiny_model(seed: int = 0, **overrides) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(tiny_config(**overrides)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)  # not all ones, so a wrong norm weight shows
            else:
                param.normal_(0, 0.3)
    return model


@functools.cache
def smollm2():
    """Our SmolLM2-135M-Instruct, loaded once per test session (skips when not installed)."""
    from stepaudio.errors import ModelNotFound
    from stepaudio.lm.loaders import MINI_CHAT, load_lm

    try:
        return load_lm(MINI_CHAT)
    except ModelNotFound as error:
        pytest.skip(str(error))
