"""Dual-codebook speech tokenizer: semantic 16.7 Hz x 1024 + acoustic 25 Hz x 4096, interleaved 2:3."""
