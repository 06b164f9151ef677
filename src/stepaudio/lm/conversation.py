"""A text conversation with a chat model: the history, one cache reused across turns, and replies
that stream and can be cancelled (the real-time controller interrupts them on barge-in)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

from stepaudio.lm.generate import Session, stream_text
from stepaudio.lm.loaders import LanguageModel
from stepaudio.lm.model import Transformer
from stepaudio.lm.prompts import Message
from stepaudio.lm.sampling import Sampling
from stepaudio.lm.speculative import SpeculativeDecoder


class Conversation:
    def __init__(
        self,
        lm: LanguageModel,
        sampling: Sampling,
        system: str | None = None,
        draft: Transformer | None = None,
        max_len: int | None = None,
    ):
        """draft: a cheaper model with the same vocabulary for speculative decoding (e.g. the 4-bit
        copy of a float model: same answers under greedy decoding, fewer slow steps)."""
        self.lm = lm
        self.sampling = replace(sampling, stop_ids=tuple(sampling.stop_ids) or lm.stop_ids())
        self.system = system
        self.history: list[Message] = []
        if draft is not None:
            self.decoder = SpeculativeDecoder(lm.model, draft, max_len=max_len)
        else:
            self.decoder = Session(lm.model, max_len=max_len)

    def messages(self) -> list[Message]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + self.history

    def reply(self, text: str, cancel: threading.Event | None = None) -> Iterator[str]:
        """Stream the answer to `text` in pieces; the finished (or cancelled) answer joins the history."""
        if not text.strip():
            raise ValueError("empty message")
        self.history.append({"role": "user", "content": text})
        prompt = self.lm.chat.encode(self.lm.tokenizer, self.messages())
        answer = []
        try:
            for piece in stream_text(self.decoder.stream(prompt, self.sampling, cancel), self.lm.tokenizer):
                answer.append(piece)
                yield piece
        finally:
            self.history.append({"role": "assistant", "content": "".join(answer)})

    def reset(self) -> None:
        self.history.clear()
