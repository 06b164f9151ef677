"""Listening: a user turn's audio -> what was said (transcript) and its audio tokens.

A `ListenStream` is fed 16 kHz audio while the user speaks and answers `hear()` at any moment with
everything heard so far. The controller calls it at a pause (so that, when the turn then ends
without more speech, nothing is left to do) and at the end of the turn.

- `WhisperListener` (mini): the acoustic codes stream in as audio arrives; at `hear()` one Whisper
  tiny.en encoder pass gives both the semantic codes and the transcript. The pass covers the turn's
  audio plus 1 s (10 s at least), not a zero-padded 30-s window (whisper.cpp's `audio_ctx`): several
  times less work on short turns, the same transcripts on the example conversation; the semantic codes
  of such a pass are close to, not equal to, the offline ones (mini's chat LM reads the transcript).
- `StepAudioListener` (official): at `hear()` the dual tokenizer encodes the turn so far (the official
  S3 acoustic tokenizer encodes whole 30-s pieces, so a turn's tokens are only complete with its
  audio), and Step-Audio-Chat transcribes the tokens with its ASR prompt (the history is kept as text).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, replace

import numpy as np

from stepaudio.tokenizer.input import SAMPLE_RATE
from stepaudio.tokenizer.interleave import GROUP_SECONDS, interleave

MIN_TURN_SAMPLES = SAMPLE_RATE // 10  # less audio than this (a click, a blip) holds no words
TAIL_SECONDS = 1.0  # silence after the turn in the encoder's window
MIN_WINDOW_SECONDS = 10.0
TRANSCRIPT_TOKENS = 256  # the longest transcript Step-Audio-Chat writes for a turn
_REPEATED = re.compile(r"^(.+?)((?:\s*\1)+)\s*(.*)$")  # a phrase, its further copies, what follows
TEXT_TOKENS_PER_SECOND = 8  # most text tokens a second of speech can need (fast speech is ~4)
ACOUSTIC_STEP = int(GROUP_SECONDS * SAMPLE_RATE)  # samples per acoustic streaming step (20 ms steps cost 5x more)


@dataclass(frozen=True)
class Heard:
    transcript: str
    audio: np.ndarray  # interleaved audio indices 0..5119 of the turn
    seconds: float  # audio heard


class _AudioBuffer:
    """The turn's samples as a list of chunks: appending is O(1) and `snapshot()` is safe to call
    from another thread while audio keeps arriving."""

    def __init__(self):
        self._chunks: list[np.ndarray] = []
        self.samples = 0

    def append(self, samples: np.ndarray) -> None:
        self._chunks.append(samples)
        self.samples += len(samples)

    def snapshot(self) -> np.ndarray:
        chunks = list(self._chunks)
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


class WhisperListener:
    def __init__(self, transcriber, tokenizer):
        """transcriber: stepaudio.asr.Transcriber; tokenizer: the mini DualTokenizer sharing its encoder.
        A turn is one short utterance: decoded without timestamps, with at most TEXT_TOKENS_PER_SECOND
        tokens per second of it, and a short temperature fallback (what breaks a repetition loop)."""
        from stepaudio.asr.transcribe import DecodingOptions

        self.transcriber, self.tokenizer = transcriber, tokenizer
        self.options = DecodingOptions(without_timestamps=True, temperatures=(0.0, 0.4, 0.8), best_of=2)

    def transcribe(self, encoded, seconds: float) -> str:
        from stepaudio.asr.transcribe import Transcriber

        options = replace(
            self.options, max_new_tokens=min(self.options.max_new_tokens, int(TEXT_TOKENS_PER_SECOND * seconds) + 8)
        )
        text = Transcriber(self.transcriber.model, self.transcriber.tokenizer, options).transcribe(encoded).text
        return collapse_repeats(text)

    def encode(self, audio: np.ndarray):
        """One encoder pass over the turn plus TAIL_SECONDS of padding, MIN_WINDOW_SECONDS at least
        (with 5 s, Whisper looped on a 1-s question); turns over 29 s: full windows."""
        import torch
        import torch.nn.functional as F

        from stepaudio.asr.whisper import ENCODER_STRIDE, WINDOW_FRAMES, EncoderOutput, audio_mel

        model = self.transcriber.model
        mel = audio_mel(audio, model.config.n_mels)
        content = mel.shape[1] - 1
        frames = max(content + round(TAIL_SECONDS * 100), round(MIN_WINDOW_SECONDS * 100))
        if frames > WINDOW_FRAMES:
            return self.transcriber.encode(audio)
        frames += frames % ENCODER_STRIDE
        with torch.inference_mode():
            window = model.encoder(F.pad(mel[:, :content], (0, frames - content))[None])[0]
        return EncoderOutput(mel, window[None], window[: content // ENCODER_STRIDE])

    @classmethod
    def load(cls) -> WhisperListener:
        from stepaudio.tokenizer.dual import DualTokenizer

        tokenizer = DualTokenizer.load("mini")
        return cls(tokenizer.semantic.transcriber, tokenizer)

    def stream(self) -> WhisperListenStream:
        return WhisperListenStream(self)


class WhisperListenStream:
    def __init__(self, listener: WhisperListener):
        self.listener = listener
        self._audio = _AudioBuffer()
        self._acoustic_stream = listener.tokenizer.acoustic.stream()
        self._acoustic: list[np.ndarray] = []
        self._unstepped: list[np.ndarray] = []  # audio not yet given to the acoustic stream
        self._lock = threading.Lock()  # step() and hear() may run on different threads
        self._cached: tuple[int, Heard] | None = None  # (samples heard, result)

    def step(self, samples: np.ndarray) -> None:
        with self._lock:
            self._audio.append(samples)
            self._unstepped.append(samples)
            if sum(map(len, self._unstepped)) >= ACOUSTIC_STEP:
                self._step_acoustic()

    def _step_acoustic(self) -> None:
        if self._unstepped:
            self._acoustic.append(self._acoustic_stream.step(np.concatenate(self._unstepped)))
            self._unstepped.clear()

    def hear(self) -> Heard:
        with self._lock:
            self._step_acoustic()
            audio, acoustic = self._audio.snapshot(), np.concatenate([np.zeros(0, np.int64), *self._acoustic])
        if self._cached is not None and self._cached[0] == len(audio):
            return self._cached[1]
        if len(audio) < MIN_TURN_SAMPLES:
            heard = Heard("", np.zeros(0, dtype=np.int64), len(audio) / SAMPLE_RATE)
        else:
            encoded = self.listener.encode(audio)  # the one encoder pass
            semantic = self.listener.tokenizer.semantic.quantize(encoded)
            transcript = self.listener.transcribe(encoded, len(audio) / SAMPLE_RATE)
            heard = Heard(transcript, interleave(semantic, acoustic), len(audio) / SAMPLE_RATE)
        self._cached = (len(audio), heard)
        return heard


def collapse_repeats(text: str) -> str:
    """One copy of a transcript that is a phrase said again and again ("Great. Great. Great."): on a
    word or two Whisper tiny can loop where the compression-ratio fallback does not see it."""
    match = _REPEATED.match(text)
    if match is None:
        return text
    phrase, tail = match.group(1), match.group(3)
    copies = match.group(2).count(phrase) + 1
    looped = copies >= 3 or copies == 2 and tail  # a cut-off copy: the token limit stopped a loop
    return phrase if looped and phrase.startswith(tail) else text


class StepAudioListener:
    def __init__(self, tokenizer, asr_lm):
        """tokenizer: the official DualTokenizer; asr_lm: Step-Audio-Chat (a LanguageModel)."""
        self.tokenizer, self.asr_lm = tokenizer, asr_lm

    def stream(self) -> StepAudioListenStream:
        return StepAudioListenStream(self)

    def transcribe(self, audio: np.ndarray) -> str:
        from stepaudio.lm.prompts import asr_messages
        from stepaudio.lm.sampling import Sampling

        lm = self.asr_lm
        prompt = lm.chat.encode(lm.tokenizer, asr_messages(audio.tolist()))
        decoder = lm.backend.decoder(len(prompt) + TRANSCRIPT_TOKENS)
        ids = decoder.stream(prompt, Sampling(max_new_tokens=TRANSCRIPT_TOKENS, stop_ids=lm.stop_ids()))
        return lm.tokenizer.decode(list(ids)).strip()


class StepAudioListenStream:
    """The turn's audio is kept as it arrives; `hear()` tokenizes and transcribes all of it (called at
    a pause, its work is done before the turn ends; the result is reused while no audio came since)."""

    def __init__(self, listener: StepAudioListener):
        self.listener = listener
        self._audio = _AudioBuffer()
        self._cached: tuple[int, Heard] | None = None  # (samples heard, result)

    def step(self, samples: np.ndarray) -> None:
        self._audio.append(samples)

    def hear(self) -> Heard:
        audio = self._audio.snapshot()
        if self._cached is not None and self._cached[0] == len(audio):
            return self._cached[1]
        tokens = np.zeros(0, dtype=np.int64)
        if len(audio) >= MIN_TURN_SAMPLES:
            tokens = self.listener.tokenizer.encode(audio, SAMPLE_RATE).interleaved
        transcript = self.listener.transcribe(tokens) if len(tokens) else ""
        heard = Heard(transcript, tokens, len(audio) / SAMPLE_RATE)
        self._cached = (len(audio), heard)
        return heard
