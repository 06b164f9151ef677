"""Speech tokenizers: audio -> semantic (16.67 Hz x 1024) and acoustic (25 Hz x 4096) tokens, interleaved 2:3.

- `interleave`: the token layout (groups, `<audio_K>`, LLM ids) and `AudioTokens`.
- `dual`: `DualTokenizer`, both streams for `mini` or the official checkpoints, offline and streaming.
- `semantic` + `paraformer`: the official semantic tokenizer (streaming Paraformer encoder + k-means).
- `s3`: the official acoustic tokenizer (S3 v1 25 Hz, weights read from its ONNX file).
- `semantic_mini`, `acoustic_mini`: the mini pair (Whisper tiny.en frames + k-means; 40 ms log-mel codebook).

Only `AudioTokens` is imported here, so that the LM engine can use the layout without loading models.
"""

from stepaudio.tokenizer.interleave import AudioTokens

__all__ = ["AudioTokens"]
