"""Where a language model runs: our in-process engine, vLLM in this process, or a remote `vllm serve`.

Everything that generates (the TTS pipeline, the chat responder, the listener, the HTTP routes) asks
its model's backend for a `Decoder` and streams token ids from it; prompts are token ids and answers
are token ids, so our tokenizers, prompt formats and stop rules stay the same on every engine.

    backend = lm.backend                     # LocalBackend, VLLMBackend or RemoteBackend
    decoder = backend.decoder(max_len=2048)  # one conversation: prompt + answer fit in max_len
    for token in decoder.stream(prompt_ids, Sampling(max_new_tokens=64, stop_ids=(2,)), cancel=event):
        ...

`Session` (lm/generate.py) is the local decoder: it keeps one KV cache and reuses the conversation's
cached prefix from turn to turn. vLLM keeps its own cache and finds shared prefixes by itself.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

    from stepaudio.lm.model import LMConfig
    from stepaudio.lm.sampling import Sampling


class Decoder(Protocol):
    """One conversation's token stream."""

    @property
    def capacity(self) -> int: ...  # positions for prompt and answer together

    def stream(
        self,
        prompt: list[int],
        sampling: Sampling,
        cancel: threading.Event | None = None,
        allowed: torch.Tensor | None = None,
    ) -> Iterator[int]:
        """New token ids as they are chosen; stop ids end the stream and are not yielded; `cancel`
        ends it (on vLLM, the request is aborted); allowed: a boolean mask [V] of the ids that may come."""
        ...


def answer_room(prompt: list[int], sampling: Sampling, capacity: int) -> int:
    """New tokens a request may take: `max_new_tokens` within the positions the prompt leaves (the check
    every engine's decoder makes before it starts)."""
    from stepaudio.errors import OptionError

    if not prompt:
        raise ValueError("the prompt is empty")
    if len(prompt) >= capacity:
        raise OptionError(f"prompt of {len(prompt)} tokens does not fit the engine's {capacity} positions")
    return min(sampling.max_new_tokens, capacity - len(prompt))


class Backend(Protocol):
    name: str  # "local", "vllm" or the URL of the vllm server
    config: LMConfig  # the network's shape, read from the checkpoint

    def decoder(self, max_len: int | None = None) -> Decoder: ...

    def close(self) -> None: ...
