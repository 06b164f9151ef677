"""Speech tokenizers: audio -> semantic (16.67 Hz x 1024) and acoustic (25 Hz x 4096) tokens, interleaved 2:3.

- `interleave`: the token layout (groups, `<audio_K>`, LLM ids) and `AudioTokens`.
- `semantic` + `paraformer`: the official semantic tokenizer (streaming Paraformer encoder + k-means).
- `s3`: the official acoustic tokenizer (S3 v1 25 Hz, weights read from its ONNX file).
- `acoustic_mini`: the mini acoustic tokenizer (25 Hz nearest centroid over 40 ms log-mel slices).
"""

from stepaudio.tokenizer.interleave import AudioTokens
from stepaudio.tokenizer.s3 import AcousticTokenizer
from stepaudio.tokenizer.semantic import SemanticStream, SemanticTokenizer

__all__ = ["AcousticTokenizer", "AudioTokens", "SemanticStream", "SemanticTokenizer"]
