"""Speech output bookkeeping: sentences for the TTS while the LM still writes, the listener's
playback clock, and which words were heard when the answer was cut.

The TTS speaks one sentence at a time, so the first sentence can be spoken while the LM writes the
second. The very first piece may be shorter, for a quicker first audio: a clause of 3 words, or the
first 4 words of a sentence still going 2 words later (so that no one or two words are left alone
after it: "The capital of France is Paris." stays whole). An interrupted answer
keeps in the context only the words the user heard: whole sentences played, then the share of the
current sentence's words in proportion to its audio played.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_SENTENCE_END = re.compile(r"[.!?。！？…]+[\"')\]]*\s+|\n+")
_CLAUSE_END = re.compile(r"[,;:，；：]\s+")
LONG_CLAUSE_WORDS = 12  # a clause this long is spoken on its own, without waiting for the full stop
FIRST_CLAUSE_WORDS = 3  # the answer's first clause goes out at this length: the first audio comes sooner
FIRST_WORDS = 4  # the first words of a long first sentence go out on their own
_FIRST_WORDS = re.compile(rf"\s*(?:\S+\s+){{{FIRST_WORDS}}}(?=(?:[^\s.!?]+\s+){{2}})")
_MARKUP = re.compile(r"[*_#`]+")


class SentenceSplitter:
    """Text pieces in (as the LM writes them), speakable sentences out as soon as each ends."""

    def __init__(self):
        self._text = ""
        self._first = True

    def push(self, piece: str) -> list[str]:
        self._text += piece
        sentences = []
        while match := self._next_break():
            sentences.append(self._text[: match.end()])
            self._text = self._text[match.end() :]
            self._first = False
        return [clean for clean in map(speakable, sentences) if clean]

    def flush(self) -> list[str]:
        rest, self._text = speakable(self._text), ""
        return [rest] if rest else []

    def _next_break(self) -> re.Match | None:
        """The earliest end of a sentence, or of a clause long enough to be spoken alone."""
        first_words = _FIRST_WORDS.match(self._text) if self._first else None
        found = [match for match in (_SENTENCE_END.search(self._text), self._long_clause(), first_words) if match]
        return min(found, key=lambda match: match.end(), default=None)

    def _long_clause(self) -> re.Match | None:
        enough = FIRST_CLAUSE_WORDS if self._first else LONG_CLAUSE_WORDS
        for match in _CLAUSE_END.finditer(self._text):
            if len(self._text[: match.start()].split()) >= enough:
                return match
        return None


def speakable(text: str) -> str:
    """Text as the TTS should read it: no markdown emphasis or headings, single spaces."""
    return " ".join(_MARKUP.sub("", text).split())


@dataclass
class SpokenText:
    """The answer's sentences with the seconds of audio made for each so far."""

    sentences: list[tuple[str, float]] = field(default_factory=list)

    def start(self, sentence: str) -> None:
        self.sentences.append((sentence, 0.0))

    def add_audio(self, seconds: float) -> None:
        sentence, spoken = self.sentences[-1]
        self.sentences[-1] = (sentence, spoken + seconds)

    def heard(self, played: float) -> str:
        """The words heard after `played` seconds of the answer's audio."""
        words = []
        for sentence, seconds in self.sentences:
            if seconds == 0:  # not spoken yet: neither is anything after it
                break
            if played >= seconds:
                words += sentence.split()
                played -= seconds
                continue
            sentence_words = sentence.split()
            words += sentence_words[: int(len(sentence_words) * played / seconds + 1e-6)]
            break
        return " ".join(words)


class PlaybackClock:
    """When the listener hears the audio sent: each chunk plays after the previous one ends, or as
    soon as it arrives if the player ran dry (a real-time player with no further buffering)."""

    def __init__(self):
        self._spans: list[tuple[float, float]] = []  # (start, seconds) in clock time
        self.sent = 0.0  # seconds of audio sent

    def send(self, seconds: float, now: float) -> None:
        start = max(now, self.ends())
        self._spans.append((start, seconds))
        self.sent += seconds

    def ends(self) -> float:
        """Clock time at which the audio sent so far has played out (0 before any)."""
        return self._spans[-1][0] + self._spans[-1][1] if self._spans else 0.0

    def played(self, now: float) -> float:
        """Seconds of the audio sent that have been played by `now`."""
        return sum(min(max(now - start, 0.0), seconds) for start, seconds in self._spans)
