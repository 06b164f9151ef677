"""llama.cpp (llama-cpp-python) for GGUF chat models such as mini's SmolLM2: its own quantised CPU
kernels read the file's 4-bit blocks as they are, about 3x our engine's decode speed on a small CPU
with the weights' size in memory (bench/lm.py). Step1 stays on our engine (llama.cpp has no
square-root ALiBi).

Each decoder is one llama.cpp context (its KV cache; the weights are memory-mapped once and shared),
and reuses the cached prefix of the conversation from turn to turn, as our `Session` does. The rules
that read the history (our repetition penalty over the whole context, the official repetition-aware
ban), the `allowed` mask and the length floor run in a logits processor with our own functions, so the
sampling is ours; llama.cpp draws the token.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from stepaudio.errors import EngineError
from stepaudio.lm.backends import answer_room
from stepaudio.lm.model import LMConfig
from stepaudio.lm.sampling import Sampling, shape_logits


class LlamaCppBackend:
    name = "llama.cpp"

    def __init__(self, path: Path, config: LMConfig, threads: int | None = None):
        try:
            import llama_cpp  # noqa: F401
        except ImportError as error:
            raise EngineError(
                "--engine llama.cpp needs llama-cpp-python: pip install 'stepaudio[llama-cpp]' (builds llama.cpp, "
                "minutes); or use --engine local"
            ) from error
        self.path, self.config = path, config
        self.threads = threads or torch.get_num_threads()

    def decoder(self, max_len: int | None = None) -> LlamaCppDecoder:
        return LlamaCppDecoder(self, min(max_len or self.config.max_seq_len, self.config.max_seq_len))

    def close(self) -> None:
        pass


class LlamaCppDecoder:
    def __init__(self, backend: LlamaCppBackend, capacity: int):
        from llama_cpp import Llama

        self.capacity = capacity
        self._llama = Llama(
            str(backend.path), n_ctx=capacity, n_threads=backend.threads, n_threads_batch=backend.threads, verbose=False
        )

    def stream(
        self,
        prompt: list[int],
        sampling: Sampling,
        cancel: threading.Event | None = None,
        allowed: torch.Tensor | None = None,
    ) -> Iterator[int]:
        max_new = answer_room(prompt, sampling, self.capacity)
        stop, produced = set(sampling.stop_ids), 0
        stops = torch.tensor(sorted(stop), dtype=torch.long)
        banned = None if allowed is None else ~allowed.cpu()

        def rules(input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
            logits = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))[None]
            history = torch.from_numpy(np.asarray(input_ids, dtype=np.int64))[None] if sampling.reads_history else None
            logits = shape_logits(logits, sampling, history)
            if banned is not None:
                logits = logits.masked_fill(banned, float("-inf"))
            if produced < sampling.min_new_tokens and len(stops):
                logits = logits.index_fill(-1, stops, float("-inf"))
            return logits[0].numpy()

        if sampling.seed is not None:
            self._llama.set_seed(sampling.seed)
        if max_new <= 0:
            return
        needs_rules = sampling.reads_history or banned is not None or sampling.min_new_tokens > 0
        generated = self._llama.generate(
            prompt,
            temp=sampling.temperature,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=0.0,
            repeat_penalty=1.0,  # ours, over the whole history, runs in `rules`
            logits_processor=[rules] if needs_rules else None,  # each call copies the vocabulary's logits
        )
        for token in generated:
            if token in stop or (cancel is not None and cancel.is_set()):
                return
            yield token
            produced += 1
            if produced == max_new:
                return
