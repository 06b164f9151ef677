"""The language-model engine: Step1 (sqrt-ALiBi) and Llama-family (RoPE) decoders with a static KV
cache, text tokenizers, the official prompt formats, sampling, streaming and speculative decoding; and
the backends that run a model on vLLM instead (`stepaudio.lm.backends`).

    from stepaudio.lm import Sampling, load_lm

    lm = load_lm("mini-chat")  # engine=EngineOptions("vllm") or EngineOptions("http://127.0.0.1:8000")
    prompt = lm.chat.encode(lm.tokenizer, [{"role": "user", "content": "What is the capital of France?"}])
    answer = lm.backend.decoder().stream(prompt, Sampling(max_new_tokens=32, stop_ids=lm.stop_ids()))
    print(lm.tokenizer.decode(list(answer)))
"""

from stepaudio.lm.backends.options import EngineOptions
from stepaudio.lm.generate import Session, stream_text
from stepaudio.lm.loaders import LanguageModel, load_lm
from stepaudio.lm.model import LMConfig, Transformer
from stepaudio.lm.sampling import Sampling
from stepaudio.lm.speculative import SpeculativeDecoder

__all__ = [
    "EngineOptions",
    "LMConfig",
    "LanguageModel",
    "Sampling",
    "Session",
    "SpeculativeDecoder",
    "Transformer",
    "load_lm",
    "stream_text",
]
