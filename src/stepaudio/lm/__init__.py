"""The language-model engine: Step1 (sqrt-ALiBi) and Llama-family (RoPE) decoders with a static KV
cache, text tokenizers, the official prompt formats, sampling, streaming and speculative decoding.

    from stepaudio.lm import Sampling, Session, load_lm

    lm = load_lm("mini-chat")
    prompt = lm.chat.encode(lm.tokenizer, [{"role": "user", "content": "What is the capital of France?"}])
    answer = Session(lm.model).generate([prompt], Sampling(max_new_tokens=32, stop_ids=lm.stop_ids()))[0]
    print(lm.tokenizer.decode(answer))
"""

from stepaudio.lm.generate import Session, stream_text
from stepaudio.lm.loaders import LanguageModel, load_lm
from stepaudio.lm.model import LMConfig, Transformer
from stepaudio.lm.sampling import Sampling
from stepaudio.lm.speculative import SpeculativeDecoder

__all__ = [
    "LMConfig",
    "LanguageModel",
    "Sampling",
    "Session",
    "SpeculativeDecoder",
    "Transformer",
    "load_lm",
    "stream_text",
]
