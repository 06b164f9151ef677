"""The conversation context, kept as text: user transcripts and what the assistant actually said.

Keeping text instead of audio tokens is what lets a long spoken conversation fit a small context
(Step-Audio reports 14:1); `compression_ratio` measures it on this conversation: the audio tokens the
turns would have taken (41.67 per second of speech, both sides) over the text tokens kept. The system
prompt is pinned; when the prompt outgrows the token budget the oldest turns go first. When the
assistant is interrupted its turn is cut to the words that were played.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stepaudio.errors import OptionError
from stepaudio.lm.prompts import Message
from stepaudio.tokenizer.interleave import AUDIO_TOKENS_PER_SECOND


@dataclass
class Turn:
    item_id: str
    role: str  # "user" | "assistant"
    text: str
    audio_seconds: float  # the speech this turn was (heard or spoken)


class ContextManager:
    def __init__(self, measure: Callable[[list[Message]], int], budget: int, system: str | None = None):
        """measure: the prompt length in tokens of a message list; budget: most prompt tokens."""
        self.measure, self.budget, self.system = measure, budget, system
        self.turns: list[Turn] = []
        self.evicted = 0  # turns forgotten to stay within the budget
        self._audio_tokens = 0.0  # of every turn ever added (evicted ones too)
        self._text_tokens = 0

    def add(self, turn: Turn) -> None:
        self.turns.append(turn)
        self._audio_tokens += turn.audio_seconds * AUDIO_TOKENS_PER_SECOND
        self._text_tokens += self.measure([{"role": turn.role, "content": turn.text}]) - self.measure([])

    def messages(self, new_user: str | None = None) -> list[Message]:
        """The prompt's messages (pinned system prompt, history, the new user turn if any), the oldest
        turns evicted until they fit the budget."""
        while True:
            messages = self._render(new_user)
            if self.measure(messages) <= self.budget:
                return messages
            if not self.turns:
                raise OptionError(f"the user turn alone is over the context budget of {self.budget} tokens")
            self.turns.pop(0)
            self.evicted += 1

    def cut(self, item_id: str, text: str) -> None:
        """The assistant turn `item_id` said only `text` (it was interrupted or truncated)."""
        for turn in self.turns:
            if turn.item_id == item_id:
                turn.text = text
                return

    def find(self, item_id: str) -> Turn | None:
        return next((turn for turn in self.turns if turn.item_id == item_id), None)

    def compression_ratio(self) -> float:
        """Audio tokens the turns would have taken / text tokens kept for them (0 before any turn)."""
        return self._audio_tokens / self._text_tokens if self._text_tokens else 0.0

    def _render(self, new_user: str | None) -> list[Message]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        history = [{"role": turn.role, "content": turn.text} for turn in self.turns if turn.text]
        return system + history + ([{"role": "user", "content": new_user}] if new_user is not None else [])
