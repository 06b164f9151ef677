"""A text conversation with a chat model: the history, one cache reused across turns, and replies
that stream and can be cancelled (the real-time controller interrupts them on barge-in)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

from stepaudio.errors import OptionError
from stepaudio.lm.generate import stream_text
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
            self.decoder = lm.backend.decoder(max_len)

    def messages(self) -> list[Message]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + self.history

    def reply(self, text: str, cancel: threading.Event | None = None) -> Iterator[str]:
        """Stream the answer to `text` in pieces; the finished (or cancelled) answer joins the history.
        When the conversation outgrows the model's context, the oldest turns are forgotten."""
        if not text.strip():
            raise OptionError("empty message: say something")
        self.history.append({"role": "user", "content": text})
        prompt = self._prompt_that_fits()
        sampling = replace(
            self.sampling, max_new_tokens=min(self.sampling.max_new_tokens, self.decoder.capacity - len(prompt))
        )
        answer = []
        try:
            for piece in stream_text(self.decoder.stream(prompt, sampling, cancel), self.lm.tokenizer):
                answer.append(piece)
                yield piece
        finally:
            self.history.append({"role": "assistant", "content": "".join(answer)})

    def reset(self) -> None:
        self.history.clear()

    def _prompt_that_fits(self) -> list[int]:
        """The prompt with room left for an answer (a quarter of the context at least, or the whole
        max_new_tokens if smaller), dropping the oldest exchanges as needed. The number of exchanges
        to drop is found by bisection: a long history costs a few encodings, not one per exchange."""
        room = min(self.sampling.max_new_tokens, self.decoder.capacity // 4)
        system = [{"role": "system", "content": self.system}] if self.system else []

        def without(exchanges: int) -> list[int]:  # the prompt without the oldest `exchanges` pairs
            return self.lm.chat.encode(self.lm.tokenizer, system + self.history[2 * exchanges :])

        def fits(prompt: list[int]) -> bool:
            return len(prompt) + room <= self.decoder.capacity

        if fits(prompt := without(0)):
            return prompt
        low, high = 0, (len(self.history) - 1) // 2  # dropping `high` leaves only the new message
        if not fits(prompt := without(high)):
            self.history.clear()
            raise OptionError(
                f"the message is {len(prompt)} tokens long; this model's context holds {self.decoder.capacity} "
                "with room for an answer: send a shorter one"
            )
        while high - low > 1:  # dropping `low` exchanges is too few, dropping `high` is enough
            middle = (low + high) // 2
            if fits(candidate := without(middle)):
                high, prompt = middle, candidate
            else:
                low = middle
        del self.history[: 2 * high]
        return prompt
