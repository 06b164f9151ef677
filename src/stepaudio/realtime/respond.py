"""Answering: the conversation so far (text) plus the user's new turn -> the answer's text, streamed.

What the model can read decides what the new turn is: a text chat model (mini: SmolLM2) answers the
transcript; Step-Audio-Chat reads the turn's audio tokens directly (`<audio_K>` in the user message).
One class serves both; `reads_audio` is the capability the controller asks about.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

import torch

from stepaudio.lm.generate import stream_text
from stepaudio.lm.loaders import LanguageModel
from stepaudio.lm.prompts import Message, audio_text
from stepaudio.lm.sampling import Sampling
from stepaudio.realtime.listen import Heard

CONTEXT_TOKENS = 2048  # per-session KV cache: history + new turn + answer
# Step-Audio-Chat's: room for the release's 2048-token answer after a long history and spoken turn
OFFICIAL_CONTEXT_TOKENS = 8192


class ChatResponder:
    def __init__(self, lm: LanguageModel, sampling: Sampling, reads_audio: bool, max_len: int = CONTEXT_TOKENS):
        self.lm, self.reads_audio, self.max_len = lm, reads_audio, max_len
        self.sampling = replace(sampling, stop_ids=tuple(sampling.stop_ids) or lm.stop_ids())
        self.text_only = text_ids(lm)

    @property
    def answer_tokens(self) -> int:
        """The longest answer, in tokens."""
        return self.sampling.max_new_tokens

    def prompt_tokens(self, messages: list[Message]) -> int:
        return len(self.lm.chat.encode(self.lm.tokenizer, messages))

    def user_content(self, heard: Heard) -> str:
        """What the model reads for a spoken turn."""
        return audio_text(heard.audio.tolist()) if self.reads_audio else heard.transcript

    def session(self) -> ResponderSession:
        return ResponderSession(self)


def text_ids(lm: LanguageModel) -> torch.Tensor | None:
    """The answer is text for the TTS to speak: a mask of the model's ids that are text pieces when its
    vocabulary has more (Step1: the audio tokens and unused ids after them); None when all are text."""
    vocab, text = lm.config.vocab_size, lm.tokenizer.vocab_size
    return torch.arange(vocab) < text if vocab > text else None


class ResponderSession:
    """One conversation's KV cache (the history prefix is reused from turn to turn, and a committed
    speculative answer costs nothing more); one answer at a time."""

    def __init__(self, responder: ChatResponder):
        self.responder = responder
        self._decoder = responder.lm.backend.decoder(responder.max_len)
        self._busy = threading.Lock()  # a cancelled answer still finishing holds the cache

    @property
    def capacity(self) -> int:
        return self._decoder.capacity

    def reply(self, messages: list[Message], cancel: threading.Event) -> Iterator[str]:
        lm = self.responder.lm
        with self._busy:
            prompt = lm.chat.encode(lm.tokenizer, messages)
            room = self._decoder.capacity - len(prompt)
            sampling = replace(
                self.responder.sampling, max_new_tokens=min(self.responder.sampling.max_new_tokens, room)
            )
            tokens = self._decoder.stream(prompt, sampling, cancel, allowed=self.responder.text_only)
            yield from stream_text(tokens, lm.tokenizer)
