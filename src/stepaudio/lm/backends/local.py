"""Our own engine (stepaudio.lm.model): the network in this process, one KV cache per decoder."""

from __future__ import annotations

from stepaudio.lm.generate import Session
from stepaudio.lm.model import Transformer


def in_process(backend, source: str) -> Transformer:
    """The network of `backend` when it runs in this process (quantisation, speculative decoding, training
    need it); on another engine, an error that says so."""
    if not isinstance(backend, LocalBackend):
        from stepaudio.errors import EngineError

        raise EngineError(f"{source} runs on {backend.name}, not in this process: use --engine local")
    return backend.model


class LocalBackend:
    name = "local"

    def __init__(self, model: Transformer):
        self.model = model
        self.config = model.config

    def decoder(self, max_len: int | None = None) -> Session:
        return Session(self.model, max_len=min(max_len, self.config.max_seq_len) if max_len else None)

    def close(self) -> None:
        pass
