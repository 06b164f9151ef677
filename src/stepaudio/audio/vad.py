"""Voice activity detection: Silero VAD (its ONNX file, run with onnxruntime) and a hysteresis state
machine that turns speech probabilities into the events a voice conversation needs.

Events, with times in seconds from the start of the stream:
- `speech_started`: speech held for `start_ms` (shorter bursts, such as coughs, never start a turn);
- `pause`: silence for `pause_ms` inside a turn (where a controller may start a speculative answer);
- `speech_resumed`: speech again after a pause (a speculative answer is then void);
- `end_of_turn`: silence for `end_ms`.
Speech begins at probability >= `threshold` and only ends below `negative_threshold` (hysteresis).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stepaudio.errors import AudioError, OptionError
from stepaudio.rates import SAMPLE_RATE

FRAME = 512  # samples per VAD decision: 32 ms
CONTEXT = 64  # samples of the previous frame the model also sees
FRAME_SECONDS = FRAME / SAMPLE_RATE


@dataclass(frozen=True)
class VADParams:
    threshold: float = 0.5  # speech probability that starts speech
    negative_threshold: float = 0.35  # below this, speech has stopped
    start_ms: int = 200  # speech this long starts a turn
    pause_ms: int = 300  # silence this long inside a turn is a pause
    end_ms: int = 800  # silence this long ends the turn

    def __post_init__(self):
        if not 0 < self.negative_threshold <= self.threshold < 1 or not 0 <= self.pause_ms <= self.end_ms:
            raise OptionError(f"bad VAD settings {self}: need 0 < negative_threshold <= threshold < 1, pause <= end")


# Turn-taking of a voice conversation: a pause of two frames (64 ms) starts a speculative answer (it is
# ready sooner; the answer to a turn that goes on is dropped), 500 ms of silence ends the turn.
CONVERSATION_VAD = VADParams(pause_ms=64, end_ms=500)


class EventKind(enum.Enum):
    SPEECH_STARTED = "speech_started"
    PAUSE = "pause"
    SPEECH_RESUMED = "speech_resumed"
    END_OF_TURN = "end_of_turn"


@dataclass(frozen=True)
class VADEvent:
    kind: EventKind
    time: float  # seconds from the start of the stream


class _State(enum.Enum):
    QUIET = 0
    STARTING = 1  # speech heard, not yet for start_ms
    SPEAKING = 2
    PAUSED = 3  # a pause event was sent; speech resumes or the turn ends


class SileroVAD:
    """The Silero model: 16 kHz samples -> one speech probability per 32 ms frame."""

    def __init__(self, onnx_path: str | Path):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = options.intra_op_num_threads = 1  # tiny model: threads only cost
        self.session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    @classmethod
    def load(cls, model: str = "mini") -> SileroVAD:
        from stepaudio.models.store import resolve_model

        return cls(resolve_model(model).require("vad"))

    def stream(self, params: VADParams | None = None) -> VADStream:
        return VADStream(self, params or VADParams())

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """Speech probability of every whole 32 ms frame of an utterance: [len // 512]."""
        stream = self.stream()
        stream.step(samples)
        return np.array(stream.probabilities)


class VADStream:
    """Per-session state: `step(samples)` -> the events its audio completes; `flush()` ends the turn."""

    def __init__(self, vad: SileroVAD, params: VADParams):
        self.vad, self.params = vad, params
        self.probabilities: list[float] = []
        self._model_state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._state, self._since = _State.QUIET, 0.0  # state, and when its current run began

    def step(self, samples: np.ndarray) -> list[VADEvent]:
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1 or not np.isfinite(samples).all():
            raise AudioError("the VAD takes finite 16 kHz mono samples [n]")
        self._pending = np.concatenate([self._pending, samples])
        events = []
        while len(self._pending) >= FRAME:
            frame, self._pending = self._pending[:FRAME], self._pending[FRAME:]
            events += self._decide(self._probability(frame), len(self.probabilities) * FRAME_SECONDS)
        return events

    def flush(self) -> list[VADEvent]:
        """The stream is over: a turn still open ends now."""
        end = len(self.probabilities) * FRAME_SECONDS
        open_turn = self._state in (_State.SPEAKING, _State.PAUSED)
        self._state = _State.QUIET
        return [VADEvent(EventKind.END_OF_TURN, end)] if open_turn else []

    def _probability(self, frame: np.ndarray) -> float:
        window = np.concatenate([self._context, frame])[None]
        inputs = {"input": window, "state": self._model_state, "sr": np.array(SAMPLE_RATE, dtype=np.int64)}
        output, self._model_state = self.vad.session.run(None, inputs)
        self._context = frame[-CONTEXT:]
        probability = float(output[0, 0])
        self.probabilities.append(probability)
        return probability

    def _decide(self, probability: float, start: float) -> list[VADEvent]:
        """Advance the state machine by one frame that begins at `start` seconds."""
        p, now, held = self.params, start + FRAME_SECONDS, (start + FRAME_SECONDS - self._since) * 1000
        speech, silence = probability >= p.threshold, probability < p.negative_threshold
        if self._state is _State.QUIET:
            if speech:
                self._state, self._since = _State.STARTING, start
        elif self._state is _State.STARTING:
            if silence:
                self._state = _State.QUIET
            elif held >= p.start_ms:
                self._state = _State.SPEAKING
                return [VADEvent(EventKind.SPEECH_STARTED, self._since)]
        elif self._state is _State.SPEAKING:
            if not silence:
                self._since = now  # silence is counted from the last frame that was not silent
            elif held >= p.end_ms:
                self._state = _State.QUIET
                return [VADEvent(EventKind.PAUSE, now), VADEvent(EventKind.END_OF_TURN, now)]
            elif held >= p.pause_ms:
                self._state = _State.PAUSED
                return [VADEvent(EventKind.PAUSE, now)]
        elif self._state is _State.PAUSED:
            if speech:
                self._state, self._since = _State.SPEAKING, now
                return [VADEvent(EventKind.SPEECH_RESUMED, start)]
            if held >= p.end_ms:
                self._state = _State.QUIET
                return [VADEvent(EventKind.END_OF_TURN, now)]
        return []
