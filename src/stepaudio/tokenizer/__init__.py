"""Speech tokenizers: audio -> semantic (16.67 Hz x 1024) and acoustic (25 Hz x 4096) tokens, interleaved 2:3."""

from stepaudio.tokenizer.interleave import AudioTokens

__all__ = ["AudioTokens"]
